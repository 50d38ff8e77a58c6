"""Import checkpoints written by the original EmoSphere-SER training script, or by the
MSP-Podcast challenge baseline it forks, into an emosphere model directory.

The original writes one PyTorch state dict per module and a pickle of the
waveform statistics:

* ``--ssl`` (``best_ssl.pt``, ``final_ssl.pt``): the fine-tuned transformers
  encoder (``WavLMModel``); its architecture comes from ``encoder`` (a hub id
  or a local transformers directory; only its config is read), its weights
  always from this file. Keys gain the prefix ``encoder.model.``; weight-norm
  parameters saved as ``weight_g``/``weight_v`` by older transformers are
  renamed to the ``parametrizations.weight.original0/1`` of newer ones and back.
* ``--pool`` (``best_pool.pt``, ``final_pool.pt``): recognised by its keys:
  ``MelStyleEncoder`` (``spectral.*``, ``temporal.*``, ``slf_attn.*``, ``fc.*``)
  -> :class:`emosphere.pooling.StylePooling`; ``AttentiveStatisticsPooling``
  (``sap_linear.*``, ``attention`` of shape (dim, 1)) ->
  :class:`~emosphere.pooling.AttentiveStatisticsPooling` (``attention``
  transposed into a bias-free Linear); an empty state dict, or the word
  ``mean``, -> :class:`~emosphere.pooling.MeanPooling` (the baseline saves no
  file for it).
* ``--ser`` (``best_dim_ser.pt``, ``final_ser.pt``): ``EmotionRegression`` with
  one hidden layer (``fc.0.0`` Linear, ``fc.0.1`` LayerNorm, ``out.0`` Linear)
  -> the regression :class:`~emosphere.model.Head` (``net.1``, ``net.2``,
  ``net.5``); its 3 outputs, ordered arousal, dominance, valence on [0, 1],
  are reordered to arousal, valence, dominance.
* ``--aux`` (``best_sev_ser.pt``): the same head with 8 outputs in the
  original's octant order -> the region head, rows permuted to emosphere's
  octant order (:data:`ORIGINAL_OCTANTS`). Without it the model has no region
  head and regions come from the predicted values' geometry.
* ``--stats`` (``train_norm_stat.pkl``): the pickled tuple ``(wav_mean,
  wav_std)``, read once with an unpickler that accepts numbers only (numpy
  scalars included). The original normalises ``(wav - mean) / (std + 1e-6)``,
  so the model stores ``std + 1e-6``.

Dropout, the 2 attention heads and the attention scale 1/sqrt(dim) are those
of the original's modules; none of them is stored in a state dict.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .audio import AudioStats
from .config import EncoderConfig, ModelConfig
from .errors import UserError
from .io import atomic_directory
from .sphere import DIMENSIONS, OCTANT_NAMES, RegionSet

ORIGINAL_DIMENSIONS = ("arousal", "dominance", "valence")
"""Output order of the original's regression head (its label columns EmoAct, EmoDom, EmoVal)."""
ORIGINAL_OCTANTS = (
    ("I", (+1, +1, +1)),
    ("II", (-1, +1, +1)),
    ("III", (-1, -1, +1)),
    ("IV", (+1, -1, +1)),
    ("V", (+1, +1, -1)),
    ("VI", (-1, +1, -1)),
    ("VII", (-1, -1, -1)),
    ("VIII", (+1, -1, -1)),
)
"""The original's auxiliary classes in output order, with the signs of the centred (A, V, D)
values each stands for (a centred value >= 0 counting as +)."""
STD_EPSILON = 1e-6
"""The original divides by ``wav_std + 1e-6``."""
PROVENANCE_FILE = "imported_from.json"
_PARAMETRIZED = (".parametrizations.weight.original0", ".parametrizations.weight.original1")
_WEIGHT_NORM = (".weight_g", ".weight_v")
_OPTIONAL_ENCODER_KEYS = ("masked_spec_embed",)
"""Used only for masking during pre-training; kept from whichever side has it."""


class OriginalCheckpointError(UserError, ValueError):
    """A checkpoint set that cannot be imported; the message names the file."""


# --- reading ---------------------------------------------------------------------------------------


class _NumbersOnly(pickle.Unpickler):
    """Unpickles Python numbers, tuples and lists, and numpy numeric scalars; refuses everything else."""

    def find_class(self, module: str, name: str) -> Any:
        if name == "scalar" and module in ("numpy.core.multiarray", "numpy._core.multiarray"):
            return _numeric_scalar
        if (module, name) == ("numpy", "dtype"):
            return _numeric_dtype
        raise pickle.UnpicklingError(f"refused {module}.{name}")


def _numeric_dtype(spec: Any, *args: Any) -> np.dtype:
    if not isinstance(spec, str):
        raise pickle.UnpicklingError(f"refused numpy dtype {spec!r}")
    dtype = np.dtype(spec)
    if dtype.kind not in "iuf":
        raise pickle.UnpicklingError(f"refused numpy dtype {spec!r}")
    return dtype


def _numeric_scalar(dtype: Any, data: Any = None) -> np.generic:
    if not isinstance(dtype, np.dtype) or dtype.kind not in "iuf" or not isinstance(data, bytes):
        raise pickle.UnpicklingError("refused a numpy scalar that is not a number")
    return np.frombuffer(data, dtype=dtype)[0]


def read_norm_stats(path: str | os.PathLike) -> tuple[float, float]:
    """``(wav_mean, wav_std)`` from the original's ``train_norm_stat.pkl``, unpickled with numbers only."""
    path = Path(path)
    if not path.is_file():
        raise OriginalCheckpointError(f"{path}: statistics file not found")
    try:
        values = _NumbersOnly(io.BytesIO(path.read_bytes())).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as error:
        raise OriginalCheckpointError(f"{path}: not a pickle of two numbers (wav_mean, wav_std): {error}") from None
    numbers = (int, float, np.integer, np.floating)
    if (
        not isinstance(values, (tuple, list))
        or len(values) != 2
        or not all(isinstance(v, numbers) and not isinstance(v, bool) for v in values)
    ):
        raise OriginalCheckpointError(f"{path}: expected (wav_mean, wav_std), got {values!r}")
    mean, std = (float(v) for v in values)
    if not (math.isfinite(mean) and math.isfinite(std) and std > 0):
        raise OriginalCheckpointError(f"{path}: wav_mean must be finite and wav_std positive, got {mean}, {std}")
    return mean, std


def read_state_dict(path: str | os.PathLike, what: str) -> dict[str, torch.Tensor]:
    """A state dict saved with ``torch.save(module.state_dict())``, loaded tensors-only onto the CPU."""
    path = Path(path)
    if not path.is_file():
        raise OriginalCheckpointError(f"{path}: {what} checkpoint not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - torch raises many kinds for a bad file
        raise OriginalCheckpointError(f"{path}: not a PyTorch state dict ({type(error).__name__}: {error})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise OriginalCheckpointError(f"{path}: expected a state dict (parameter name -> tensor) of the {what}")
    return dict(state)


# --- mapping ---------------------------------------------------------------------------------------

STYLE_KEYS = {
    "spectral.0.fc": "spectral.0",
    "spectral.3.fc": "spectral.3",
    "temporal.0.conv1.conv": "temporal.0.conv",
    "temporal.1.conv1.conv": "temporal.1.conv",
    "slf_attn.w_qs": "attention.query",
    "slf_attn.w_ks": "attention.key",
    "slf_attn.w_vs": "attention.value",
    "slf_attn.fc": "attention.out",
    "fc.fc": "projection",
}
"""MelStyleEncoder module -> StylePooling module (each with ``.weight`` and ``.bias``)."""
HEAD_KEYS = {"fc.0.0": "net.1", "fc.0.1": "net.2", "out.0": "net.5"}
"""EmotionRegression module -> Head module (each with ``.weight`` and ``.bias``)."""


def pooling_kind(state: dict[str, torch.Tensor], path: str | os.PathLike) -> str:
    """``style``, ``attentive`` or ``mean``, recognised from the pooling state dict's keys."""
    keys = set(state)
    style = {f"{module}.{p}" for module in STYLE_KEYS for p in ("weight", "bias")}
    if not keys:
        return "mean"
    if keys == style:
        return "style"
    if keys == {"sap_linear.weight", "sap_linear.bias", "attention"}:
        return "attentive"
    raise OriginalCheckpointError(
        f"{path}: not a MelStyleEncoder, AttentiveStatisticsPooling or MeanPooling state dict "
        f"(keys: {sorted(keys)[:8]}{' ...' if len(keys) > 8 else ''})"
    )


def map_pooling(kind: str, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The pooling's state dict under emosphere's names (relative to ``pooling.``)."""
    if kind == "style":
        return {f"{STYLE_KEYS[key.rsplit('.', 1)[0]]}.{key.rsplit('.', 1)[1]}": value for key, value in state.items()}
    if kind == "attentive":
        return {
            "linear.weight": state["sap_linear.weight"],
            "linear.bias": state["sap_linear.bias"],
            "attention.weight": state["attention"].T.contiguous(),
        }
    return {}


def map_head(state: dict[str, torch.Tensor], path: str | os.PathLike, order: list[int]) -> dict[str, torch.Tensor]:
    """An EmotionRegression state dict under the Head's names, its output rows taken in ``order``."""
    expected = {f"{module}.{p}" for module in HEAD_KEYS for p in ("weight", "bias")}
    if set(state) != expected:
        extra = sorted(set(state) - expected)
        hint = (
            " (emosphere's heads have one hidden layer; this one has more)"
            if any(k.startswith("fc.1.") for k in extra)
            else ""
        )
        raise OriginalCheckpointError(
            f"{path}: not a one-hidden-layer EmotionRegression state dict{hint}; "
            f"expected keys {sorted(expected)}, got {sorted(state)[:8]}"
        )
    outputs = state["out.0.weight"].shape[0]
    if outputs != len(order):
        raise OriginalCheckpointError(f"{path}: the head has {outputs} outputs, expected {len(order)}")
    mapped = {f"{HEAD_KEYS[key.rsplit('.', 1)[0]]}.{key.rsplit('.', 1)[1]}": value for key, value in state.items()}
    mapped["net.5.weight"] = mapped["net.5.weight"][order].contiguous()
    mapped["net.5.bias"] = mapped["net.5.bias"][order].contiguous()
    return mapped


def regression_order() -> list[int]:
    """For each of emosphere's outputs (arousal, valence, dominance), the original's output index."""
    return [ORIGINAL_DIMENSIONS.index(name) for name in DIMENSIONS]


def octant_order() -> list[int]:
    """For each of emosphere's octant classes, the original's class index (matched by signs)."""
    octants = RegionSet("octant")
    ours = [int(octants.assign(4.0 + 2.0 * np.array(signs, dtype=np.float64))) for _, signs in ORIGINAL_OCTANTS]
    order = [ours.index(index) for index in range(len(OCTANT_NAMES))]
    return order


def map_encoder(state: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The encoder's state dict under the names of ``target`` (the new encoder's state dict): weight-norm
    parameters renamed between their two transformers spellings; optional keys taken from either side."""
    mapped = {}
    for key, value in state.items():
        for old, new in (*zip(_WEIGHT_NORM, _PARAMETRIZED), *zip(_PARAMETRIZED, _WEIGHT_NORM)):
            if key.endswith(old) and key not in target and key[: -len(old)] + new in target:
                key = key[: -len(old)] + new
        if key in _OPTIONAL_ENCODER_KEYS and key not in target:
            continue
        mapped[key] = value
    for key in _OPTIONAL_ENCODER_KEYS:
        if key in target and key not in mapped:
            mapped[key] = target[key]
    return mapped


# --- import ----------------------------------------------------------------------------------------


def _encoder_config(encoder: str):
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(encoder)
    except (OSError, ValueError) as error:
        raise OriginalCheckpointError(
            f"--encoder {encoder}: cannot read its transformers config ({error.__class__.__name__}); give a local "
            "directory with the encoder's config.json, or a hub id that is cached or reachable"
        ) from None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def import_original(
    *,
    ssl: str | os.PathLike,
    pool: str | os.PathLike,
    ser: str | os.PathLike,
    stats: str | os.PathLike,
    output: str | os.PathLike,
    aux: str | os.PathLike | None = None,
    encoder: str = "microsoft/wavlm-large",
) -> Path:
    """Turn an original checkpoint set into the model directory ``output`` (which must not exist yet,
    or be empty); returns it. ``pool`` may be the word ``mean`` for the baseline's MeanPooling."""
    from transformers import AutoModel

    from .encoder import Encoder
    from .model import EmoSphereSER

    output = Path(output)
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise OriginalCheckpointError(f"{output}: already exists; give a new folder for the model")
    sources = _sources(ssl=ssl, pool=pool, ser=ser, stats=stats, aux=aux)
    wav_mean, wav_std = read_norm_stats(sources["stats"])
    pool_state = read_state_dict(sources["pool"], "pooling") if "pool" in sources else {}
    kind = pooling_kind(pool_state, sources.get("pool", "mean"))
    ser_state = read_state_dict(sources["ser"], "regression head")
    aux_state = read_state_dict(sources["aux"], "auxiliary head") if aux is not None else None
    ssl_state = read_state_dict(sources["ssl"], "encoder")

    hf_config = _encoder_config(encoder)
    encoder_module = Encoder(AutoModel.from_config(hf_config))
    hidden = encoder_module.hidden_size
    head_hidden = ser_state.get("fc.0.0.weight", torch.empty(0, 0)).shape[0]
    config = ModelConfig(encoder=EncoderConfig(name=encoder), pooling=kind, head_hidden=head_hidden)
    stats_ = AudioStats(mean=wav_mean, std=wav_std + STD_EPSILON, num_samples=0, num_files=0)
    model = EmoSphereSER(config, encoder_module, stats_, region_head=aux_state is not None)

    state = {f"encoder.model.{k}": v for k, v in map_encoder(ssl_state, encoder_module.model.state_dict()).items()}
    state.update({f"pooling.{k}": v for k, v in map_pooling(kind, pool_state).items()})
    regression = map_head(ser_state, sources["ser"], regression_order())
    state.update({f"regression_head.{k}": v for k, v in regression.items()})
    if aux_state is not None:
        state.update({f"region_head.{k}": v for k, v in map_head(aux_state, sources["aux"], octant_order()).items()})
    _load(model, state, sources, hidden)

    provenance = _provenance(encoder, kind, aux_state is not None, (wav_mean, wav_std, stats_.std), sources)
    with atomic_directory(output) as staging:  # replaces the empty folder checked above, if any
        model.save_pretrained(staging)
        (staging / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2) + "\n")
    return output


def _sources(**given: str | os.PathLike | None) -> dict[str, Path]:
    """The files of a checkpoint set by option name (``pool`` "mean" and a missing ``aux`` have none);
    a missing file is an :class:`OriginalCheckpointError` naming the option."""
    mean_pooling = str(given["pool"]) == "mean"
    sources = {k: Path(v) for k, v in given.items() if v is not None and not (k == "pool" and mean_pooling)}
    for name, path in sources.items():
        if not path.is_file():
            raise OriginalCheckpointError(f"--{name} {path}: file not found")
    return sources


def _provenance(
    encoder: str, kind: str, region_head: bool, normalisation: tuple[float, float, float], sources: dict[str, Path]
) -> dict:
    """What ``imported_from.json`` records: the mappings applied and each source file's hash."""
    wav_mean, wav_std, stored_std = normalisation
    return {
        "format": "original EmoSphere-SER / MSP-Podcast challenge checkpoints",
        "encoder": encoder,
        "pooling": kind,
        "region_head": region_head,
        "audio_normalisation": {
            "wav_mean": wav_mean, "wav_std": wav_std, "stored_std": stored_std,
            "rule": "(wav - wav_mean) / (wav_std + 1e-6)",
        },
        "regression_outputs": f"original {list(ORIGINAL_DIMENSIONS)} -> emosphere {list(DIMENSIONS)}",
        "octants": f"original {[n for n, _ in ORIGINAL_OCTANTS]} -> emosphere {list(OCTANT_NAMES)}, by signs",
        "files": {name: {"path": str(path.resolve()), "sha256": _sha256(path)} for name, path in sources.items()},
    }  # fmt: skip


def _load(model: torch.nn.Module, state: dict[str, torch.Tensor], sources: dict[str, Path], hidden: int) -> None:
    """Load ``state`` strictly; a mismatch names the file it came from and the shapes."""
    target = model.state_dict()
    owner = {"encoder": "ssl", "pooling": "pool", "regression_head": "ser", "region_head": "aux"}

    def source(key: str) -> str:
        name = owner[key.split(".", 1)[0]]
        return f"--{name} {sources.get(name, 'mean')}"

    for key, value in state.items():
        if key in target and target[key].shape != value.shape:
            hint = ""
            if key.startswith("encoder."):
                hint = " (does --encoder name the architecture this checkpoint was trained from?)"
            elif key.startswith(("pooling.", "regression_head.net.1")):
                hint = f" (the encoder's hidden size is {hidden})"
            raise OriginalCheckpointError(
                f"{source(key)}: {key} has shape {tuple(value.shape)}, "
                f"the model expects {tuple(target[key].shape)}{hint}"
            )
    missing, unexpected = sorted(set(target) - set(state)), sorted(set(state) - set(target))
    if missing or unexpected:
        culprit = source((missing or unexpected)[0])
        raise OriginalCheckpointError(
            f"{culprit}: parameters do not match the model: missing {missing[:5]}, unexpected {unexpected[:5]}"
            " (does --encoder name the architecture this checkpoint was trained from?)"
        )
    model.load_state_dict(state)
