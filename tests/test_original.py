"""Importing the original recipe's checkpoints: a model built from them predicts what the
original modules compute.

The ``Original*`` modules below re-create the parameter names, shapes and forward pass of
the original's MelStyleEncoder, AttentiveStatisticsPooling and EmotionRegression (written
for these tests from their published structure, at a small size), randomly initialised.
"""

import os
import pickle

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
from conftest import TINY_WAVLM
from torch import nn
from transformers import WavLMConfig, WavLMModel

from emosphere.cli import main
from emosphere.model import EmoSphereSER
from emosphere.original import OriginalCheckpointError, octant_order, read_norm_stats
from emosphere.sphere import OCTANT_NAMES

pytestmark = pytest.mark.filterwarnings("ignore:Support for mismatched key_padding_mask")

DIM = TINY_WAVLM["hidden_size"]
HEAD_HIDDEN = 24
WAV_MEAN, WAV_STD = np.float64(0.0123), np.float64(0.0871)


class OriginalLinear(nn.Module):
    """A Linear kept under ``.fc`` (the original's LinearNorm)."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.fc = nn.Linear(n_in, n_out)

    def forward(self, x):
        return self.fc(x)


class OriginalGatedConv(nn.Module):
    """``conv1.conv``: Conv1d to 2x channels, kernel 5; ``x + a * sigmoid(b)`` on (batch, channels, time)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv1 = nn.Module()
        self.conv1.conv = nn.Conv1d(dim, 2 * dim, 5, padding=2)

    def forward(self, x):
        a, b = self.conv1.conv(x).chunk(2, dim=1)
        return x + a * torch.sigmoid(b)


class OriginalSelfAttention(nn.Module):
    """``w_qs``, ``w_ks``, ``w_vs``, ``fc``; 2 heads; scores divided by sqrt(model dim); residual."""

    def __init__(self, dim: int, heads: int = 2) -> None:
        super().__init__()
        self.heads = heads
        self.w_qs, self.w_ks, self.w_vs, self.fc = (nn.Linear(dim, dim) for _ in range(4))
        self.temperature = dim**0.5
        with torch.no_grad():  # peaky attention, so that its scale and masking show in the output
            self.w_qs.weight.mul_(4)
            self.w_ks.weight.mul_(4)

    def forward(self, x, key_padding):
        batch, frames, dim = x.shape
        size = dim // self.heads

        def heads_first(t):  # (heads * batch, frames, size), head-major like the original
            return t.view(batch, frames, self.heads, size).permute(2, 0, 1, 3).reshape(-1, frames, size)

        q, k, v = heads_first(self.w_qs(x)), heads_first(self.w_ks(x)), heads_first(self.w_vs(x))
        scores = torch.bmm(q, k.transpose(1, 2)) / self.temperature
        scores = scores.masked_fill(key_padding.repeat(self.heads, 1, 1), -np.inf)
        out = torch.bmm(torch.softmax(scores, dim=2), v)
        out = out.view(self.heads, batch, frames, size).permute(1, 2, 0, 3).reshape(batch, frames, dim)
        return self.fc(out) + x


def original_frame_valid(x, wav_mask):
    """The original's frame mask: 20 ms frames counted from the waveform mask, cut to the frames present."""
    lengths = torch.div(wav_mask.sum(1) - 1, 320, rounding_mode="floor").long() + 1
    valid = torch.arange(int(lengths.max()))[None, :] < lengths[:, None]
    return valid[:, : x.shape[1]]


class OriginalStyleEncoder(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.spectral = nn.Sequential(
            OriginalLinear(dim, dim), nn.Mish(), nn.Dropout(0.1), OriginalLinear(dim, dim), nn.Mish(), nn.Dropout(0.1)
        )
        self.temporal = nn.Sequential(OriginalGatedConv(dim), OriginalGatedConv(dim))
        self.slf_attn = OriginalSelfAttention(dim)
        self.fc = OriginalLinear(dim, dim)

    def forward(self, x, wav_mask):
        padding = ~original_frame_valid(x, wav_mask)
        x = self.spectral(x)
        x = self.temporal(x.transpose(1, 2)).transpose(1, 2)
        x = x.masked_fill(padding.unsqueeze(-1), 0)
        x = self.slf_attn(x, padding.unsqueeze(1).expand(-1, x.shape[1], -1))
        x = self.fc(x).masked_fill(padding.unsqueeze(-1), 0)
        return x.sum(1) / (~padding).sum(1, keepdim=True)


class OriginalAttentiveStatistics(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.sap_linear = nn.Linear(dim, dim)
        self.attention = nn.Parameter(torch.randn(dim, 1))

    def forward(self, xs, wav_mask):
        pooled = []
        for x, valid in zip(xs, original_frame_valid(xs, wav_mask)):
            x = x[valid]
            weights = torch.softmax(torch.tanh(self.sap_linear(x)) @ self.attention, dim=0)
            mean = (x * weights).sum(0)
            std = ((x * x * weights).sum(0) - mean**2).clamp(min=1e-5).sqrt()
            pooled.append(torch.cat([mean, std]))
        return torch.stack(pooled)


class OriginalMeanPooling(nn.Module):
    def forward(self, xs, wav_mask):
        return torch.stack([x[valid].mean(0) for x, valid in zip(xs, original_frame_valid(xs, wav_mask))])


class OriginalRegression(nn.Module):
    """``fc.0`` = Linear, LayerNorm, ReLU, Dropout; ``out.0`` = Linear; input dropout first."""

    def __init__(self, n_in: int, hidden: int, n_out: int) -> None:
        super().__init__()
        self.inp_drop = nn.Dropout(0.5)
        self.fc = nn.ModuleList(
            [nn.Sequential(nn.Linear(n_in, hidden), nn.LayerNorm(hidden), nn.ReLU(), nn.Dropout(0.5))]
        )
        self.out = nn.Sequential(nn.Linear(hidden, n_out))
        with torch.no_grad():  # keep the outputs inside [0, 1], where nothing is clipped
            self.out[0].weight.mul_(0.2)
            self.out[0].bias.fill_(0.5)

    def forward(self, x):
        return self.out(self.fc[0](self.inp_drop(x)))


def original_predict(ssl, pool, ser, waveform):
    """The original's inference for one unpadded clip: normalise, encode, pool, regress; 1-7 scale,
    outputs in the original's order (arousal, dominance, valence)."""
    x = torch.from_numpy(((waveform - WAV_MEAN) / (WAV_STD + 1e-6)).astype(np.float32))[None]
    mask = torch.ones_like(x)
    with torch.no_grad():
        pooled = pool(ssl(x, attention_mask=mask).last_hidden_state, mask)
        return ser(pooled)[0]


def legacy_weight_norm_names(state):
    """State dict keys as older transformers saved them (weight_g / weight_v)."""
    renamed = {}
    for key, value in state.items():
        key = key.replace("parametrizations.weight.original0", "weight_g")
        renamed[key.replace("parametrizations.weight.original1", "weight_v")] = value
    return renamed


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Unpadded clips of different lengths (float WAV so both sides read the same samples)."""
    folder = tmp_path_factory.mktemp("clips")
    rng = np.random.default_rng(0)
    for i, seconds in enumerate([0.4, 0.9, 1.3, 2.2]):
        t = np.arange(int(seconds * 16000)) / 16000
        wave = 0.1 * (1 + i) * np.sin(2 * np.pi * (120 + 60 * i) * t) + 0.02 * rng.standard_normal(len(t))
        sf.write(folder / f"clip{i}.wav", wave.astype(np.float32), 16000, subtype="FLOAT")
    return sorted(folder.glob("*.wav"))


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory):
    values = dict(TINY_WAVLM)
    values.pop("model_type")
    folder = tmp_path_factory.mktemp("encoder")
    WavLMConfig(**values).save_pretrained(folder)
    return folder


def write_set(folder, pooling, *, aux=False, legacy_names=False, encoder_dir):
    """An original checkpoint set in ``folder``; returns the original modules and the CLI arguments."""
    torch.manual_seed(0)
    ssl = WavLMModel(WavLMConfig.from_pretrained(encoder_dir)).eval()
    pool = {"style": OriginalStyleEncoder, "attentive": OriginalAttentiveStatistics}.get(
        pooling, lambda dim: OriginalMeanPooling()
    )(DIM).eval()
    ser = OriginalRegression(2 * DIM if pooling == "attentive" else DIM, HEAD_HIDDEN, 3).eval()
    ssl_state = ssl.state_dict()
    torch.save(legacy_weight_norm_names(ssl_state) if legacy_names else ssl_state, folder / "best_ssl.pt")
    torch.save(ser.state_dict(), folder / "best_dim_ser.pt")
    with open(folder / "train_norm_stat.pkl", "wb") as f:
        pickle.dump((WAV_MEAN, WAV_STD), f)
    args = [
        "import-original",
        "--ssl",
        str(folder / "best_ssl.pt"),
        "--ser",
        str(folder / "best_dim_ser.pt"),
        "--stats",
        str(folder / "train_norm_stat.pkl"),
        "--encoder",
        str(encoder_dir),
        "--output",
        str(folder / "model"),
    ]
    if pooling == "mean":
        args += ["--pool", "mean"]
    else:
        torch.save(pool.state_dict(), folder / "best_pool.pt")
        args += ["--pool", str(folder / "best_pool.pt")]
    modules = {"ssl": ssl, "pool": pool, "ser": ser}
    if aux:
        modules["aux"] = OriginalRegression(DIM, HEAD_HIDDEN, 8).eval()
        torch.save(modules["aux"].state_dict(), folder / "best_sev_ser.pt")
        args += ["--aux", str(folder / "best_sev_ser.pt")]
    return modules, args


@pytest.mark.parametrize(
    "pooling, aux, legacy_names",
    [
        ("style", True, False),  # the EmoSphere-SER recipe's best_*.pt set
        ("attentive", False, True),  # the challenge baseline's final_*.pt set (older transformers names)
        ("mean", False, False),  # the baseline with MeanPooling: no pooling file
    ],
)
def test_imported_model_predicts_what_the_original_modules_compute(
    tmp_path, clips, encoder_dir, capsys, pooling, aux, legacy_names
):
    modules, args = write_set(tmp_path, pooling, aux=aux, legacy_names=legacy_names, encoder_dir=encoder_dir)
    assert main(args) == 0
    assert (
        main(
            [
                "predict",
                "--model",
                str(tmp_path / "model"),
                "--output",
                str(tmp_path / "p.csv"),
                "--quiet",
                *map(str, clips),
            ]
        )
        == 0
    )
    table = pd.read_csv(tmp_path / "p.csv").set_index("file")
    for clip in clips:
        waveform = sf.read(clip, dtype="float32")[0]
        raw = original_predict(modules["ssl"], modules["pool"], modules["ser"], waveform)
        arousal, dominance, valence = (raw.numpy() * 6 + 1).tolist()
        row = table.loc[str(clip)]
        assert row[["arousal", "valence", "dominance"]].tolist() == pytest.approx(
            [arousal, valence, dominance], abs=1e-4
        )
        if aux:
            with torch.no_grad():
                pooled = modules["pool"](
                    modules["ssl"](
                        torch.from_numpy(((waveform - WAV_MEAN) / (WAV_STD + 1e-6)).astype(np.float32))[None]
                    ).last_hidden_state,
                    torch.ones(1, len(waveform)),
                )
                probs = torch.softmax(modules["aux"](pooled)[0], 0).numpy()
            original_names = ["I", "II", "III", "IV", "V", "VI", "VII", "VIII"]
            ours = [row[f"p_{name}"] for name in original_names]
            assert ours == pytest.approx(probs.tolist(), abs=1e-5)
            assert row["region_classifier"] == original_names[int(probs.argmax())]
    # the test can fail: the clips get different predictions, none of them clipped
    assert table["arousal"].std() > 1e-3
    assert table[["arousal", "valence", "dominance"]].stack().between(1.01, 6.99).all()
    model = EmoSphereSER.from_pretrained(tmp_path / "model")
    assert model.config.pooling == pooling and (model.region_head is not None) == aux
    assert model.stats.std == pytest.approx(WAV_STD + 1e-6) and model.stats.mean == pytest.approx(WAV_MEAN)


def test_octants_keep_their_signs():
    assert octant_order() == list(range(8))  # the original numbers the octants as emosphere does
    assert list(OCTANT_NAMES) == ["I", "II", "III", "IV", "V", "VI", "VII", "VIII"]


class _Exploit:
    def __reduce__(self):
        return (os.system, ("echo owned",))


@pytest.mark.parametrize("payload", [(0.5, 2), [np.float32(0.01), np.float64(0.3)], (np.int64(0), np.float16(1.5))])
def test_statistics_pickle_of_numbers_is_read(tmp_path, payload):
    path = tmp_path / "stats.pkl"
    path.write_bytes(pickle.dumps(payload))
    assert read_norm_stats(path) == pytest.approx(tuple(float(v) for v in payload))


@pytest.mark.parametrize(
    "payload, message",
    [
        (_Exploit(), "refused"),
        ((np.zeros(3), 1.0), "refused numpy"),
        ((0.1, 0.2, 0.3), "expected (wav_mean, wav_std)"),
        ({"mean": 0.1, "std": 0.2}, "expected (wav_mean, wav_std)"),
        ((0.1, 0.0), "wav_std positive"),
    ],
)
def test_statistics_pickle_with_anything_else_is_refused(tmp_path, payload, message):
    path = tmp_path / "stats.pkl"
    path.write_bytes(pickle.dumps(payload))
    with pytest.raises(OriginalCheckpointError, match="stats.pkl") as error:
        read_norm_stats(path)
    assert message in str(error.value)


@pytest.mark.parametrize(
    "change, message",
    [
        (
            lambda args, d: args.__setitem__(args.index("--stats") + 1, str(d / "missing.pkl")),
            "missing.pkl: file not found",
        ),
        (lambda args, d: (d / "train_norm_stat.pkl").write_bytes(pickle.dumps(_Exploit())), "refused"),
        (
            lambda args, d: torch.save({"fc.0.0.weight": torch.zeros(2, 2)}, d / "best_dim_ser.pt"),
            "not a one-hidden-layer EmotionRegression",
        ),
        (
            lambda args, d: torch.save({"linear.weight": torch.zeros(2, 2)}, d / "best_pool.pt"),
            "not a MelStyleEncoder, AttentiveStatisticsPooling or MeanPooling",
        ),
        (lambda args, d: (d / "model").mkdir() or (d / "model" / "x").write_text(""), "already exists"),
    ],
)
def test_bad_checkpoint_sets_are_one_clear_line(tmp_path, encoder_dir, capsys, change, message):
    _, args = write_set(tmp_path, "style", encoder_dir=encoder_dir)
    change(args, tmp_path)
    assert main(args) == 2
    error = capsys.readouterr().err.strip()
    assert message in error and len(error.splitlines()) == 1
    assert not (tmp_path / "model" / "config.json").exists()


def test_a_head_that_does_not_fit_the_pooling_names_the_file(tmp_path, encoder_dir, capsys):
    _, args = write_set(tmp_path, "attentive", encoder_dir=encoder_dir)
    torch.save(OriginalRegression(DIM, HEAD_HIDDEN, 3).state_dict(), tmp_path / "best_dim_ser.pt")  # 32 in, not 64
    assert main(args) == 2
    error = capsys.readouterr().err
    assert "best_dim_ser.pt" in error and "(24, 32)" in error and "(24, 64)" in error
    assert not any(p.name.startswith(".model") for p in tmp_path.iterdir())  # no staging folder left behind
