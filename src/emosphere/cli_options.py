"""What the commands of ``emosphere`` share: the parser, checked number and device types, and the
option groups that mean the same thing in every command (one name per concept).

Importing this module imports neither torch nor pandas: ``emosphere --help`` and a mistake in an
option answer at once. Old option names that users may have in scripts are kept for one release
(:func:`deprecated`): hidden from the help, they warn and do what the new name does.
"""

from __future__ import annotations

import argparse
import logging
import math
import typing
from pathlib import Path
from typing import Any

from .config import PRECISIONS, Bounds, RegionSetName

log = logging.getLogger("emosphere")
REGION_SETS: tuple[str, ...] = typing.get_args(RegionSetName)


class Parser(argparse.ArgumentParser):
    """argparse with its usage errors on one line (exit code 2, as argparse does)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _number(kind: type, bounds: Bounds):
    """An argparse type: a finite ``kind`` number within ``bounds``."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
        if value not in bounds:
            raise argparse.ArgumentTypeError(f"must be {bounds if math.isfinite(value) else 'finite'}, got {text}")
        return value

    return parse


POSITIVE_INT, COUNT = _number(int, Bounds(low=1)), _number(int, Bounds(low=0))
POSITIVE, NON_NEGATIVE = _number(float, Bounds(low=0, low_open=True)), _number(float, Bounds(low=0))
PROBABILITY = _number(float, Bounds(low=0, high=1, low_open=True, high_open=True))


def DEVICE(text: str) -> str:
    """An argparse type: a torch device string that names a device this machine has."""
    if text == "cpu":
        return text  # without importing torch: the onnx backend runs without it
    import torch

    try:
        device = torch.device(text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a torch device (cpu, cuda, cuda:1, mps)") from None
    if device.type == "cuda" and (not torch.cuda.is_available() or (device.index or 0) >= torch.cuda.device_count()):
        raise argparse.ArgumentTypeError(f"{text!r}: torch sees {torch.cuda.device_count()} CUDA device(s)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise argparse.ArgumentTypeError(f"{text!r}: MPS is not available")
    return text


def deprecated(parser: argparse.ArgumentParser, old: str, new: str, **options: Any) -> None:
    """Accept ``old`` for one release as ``new`` (hidden from the help; it warns when used)."""

    class Renamed(argparse.Action):
        def __call__(self, parser, namespace, values, option_string=None) -> None:
            log.warning("%s is deprecated and will be removed; use %s", option_string or old, new)
            setattr(namespace, self.dest, values)

    dest = new.lstrip("-").replace("-", "_")
    parser.add_argument(old, dest=dest, action=Renamed, help=argparse.SUPPRESS, **options)


def add_model(parser: argparse.ArgumentParser, *, onnx: bool = True, batch_size: int = 8) -> None:
    """How a model runs: --model (a model directory or hub id; with ``onnx``, also an exported .onnx
    file, and --backend), --device, --precision, --batch-size, --workers (decoding threads)."""
    group = parser.add_argument_group("model")
    if onnx:
        group.add_argument(
            "--model", required=True,
            help="model directory (e.g. runs/demo/model), Hugging Face hub id, or exported .onnx file",
        )  # fmt: skip
        group.add_argument(
            "--backend", choices=["auto", "torch", "onnx"], default="auto",
            help="run the model with PyTorch or ONNX Runtime (default auto: onnx for a .onnx file, else torch)",
        )  # fmt: skip
    else:
        group.add_argument("--model", required=True, help="model directory (e.g. runs/demo/model) or hub id")
    group.add_argument("--device", type=DEVICE, default="cpu", help="torch device, e.g. cpu or cuda (default cpu)")
    group.add_argument(
        "--precision", choices=PRECISIONS, default="fp32",
        help="fp32 (exact; TF32 off on GPUs) or bf16/fp16 autocast, faster on GPUs (default fp32)",
    )  # fmt: skip
    group.add_argument(
        "--batch-size", type=POSITIVE_INT, default=batch_size, help=f"windows per batch (default {batch_size})"
    )
    add_workers(group, "threads that decode audio ahead of the model (default 0: decode in the main thread)", 0)
    deprecated(parser, "--num-workers", "--workers", type=COUNT)


def add_workers(parser: Any, text: str, default: int) -> None:
    parser.add_argument("--workers", type=COUNT, default=default, help=text)


def add_corpus(parser: argparse.ArgumentParser, *, required: bool) -> None:
    """Where a corpus lives: --corpus (a folder in the MSP-Podcast layout or a manifest), --labels,
    --audio-dir, and its rating --scale."""
    parser.add_argument(
        "--corpus", required=required, type=Path,
        help="corpus folder in the MSP-Podcast layout (Audios/, Labels/labels_consensus.csv), or a manifest "
        "table (.csv or .parquet; docs/corpora.md)",
    )  # fmt: skip
    add_corpus_files(parser)


def add_corpus_files(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--labels", type=Path, help="label CSV (default: <corpus>/Labels/labels_consensus.csv)")
    parser.add_argument(
        "--audio-dir", type=Path,
        help="audio folder (default: <corpus>/Audios; for a manifest, where its relative paths start)",
    )  # fmt: skip
    parser.add_argument(
        "--scale", type=float, nargs=2, metavar=("LOW", "HIGH"),
        help="the corpus's rating scale, e.g. 1 5 (default: 1-7 for the MSP-Podcast layout; a manifest's own "
        "scale_min and scale_max)",
    )  # fmt: skip


def corpus_from(args: argparse.Namespace) -> Any:
    """The :class:`emosphere.labels.Corpus` that --corpus / --labels / --audio-dir / --scale name, or
    None when they name none."""
    from .errors import UserError
    from .labels import Corpus
    from .sphere import Scale

    if args.corpus is None and args.labels is None:
        return None
    try:
        scale = Scale(*args.scale) if args.scale else None
    except ValueError as error:
        raise UserError(f"--scale: {error}") from None
    return Corpus.open(args.corpus or ".", args.labels, args.audio_dir, scale=scale)


def add_intervals(parser: argparse.ArgumentParser) -> None:
    """How 95 % bootstrap intervals are drawn: --by, --resamples, --seed."""
    group = parser.add_argument_group("intervals")
    group.add_argument(
        "--by", choices=["utterance", "speaker"], default="utterance",
        help="resample utterances, or whole speakers (honest when a speaker's utterances are correlated; needs "
        "speaker IDs) (default utterance)",
    )  # fmt: skip
    group.add_argument(
        "--resamples", type=COUNT, default=1000, help="bootstrap replicates (default 1000; 0: no intervals)"
    )
    group.add_argument("--seed", type=COUNT, default=0, help="seed of the replicates (default 0)")


def intervals_from(args: argparse.Namespace) -> Any:
    """The :class:`emosphere.evaluate.Intervals` that --by / --resamples / --seed ask for."""
    from .evaluate import Intervals

    return Intervals(by=args.by, resamples=args.resamples, seed=args.seed)


def add_regions(parser: argparse.ArgumentParser, text: str) -> None:
    """The region set: --regions and --origin-radius."""
    parser.add_argument("--regions", choices=REGION_SETS, default="octant", help=text)
    parser.add_argument(
        "--origin-radius", type=NON_NEGATIVE, default=0.0,
        help="sphereN: centred radius up to which a point is in the origin class (default 0)",
    )  # fmt: skip


def add_quiet(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def add_overrides(parser: argparse.ArgumentParser, text: str = "config overrides (values parsed as YAML)") -> None:
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help=text)


def add_segments(parser: argparse.ArgumentParser, default: str, why: str) -> None:
    """How a recording is cut before the model: --segments (fixed windows, or the VAD's speech regions)
    and the VAD's settings (see emosphere.vad.VadSettings)."""
    group = parser.add_argument_group("speech segments")
    group.add_argument(
        "--segments", choices=["fixed", "vad"], default=default,
        help="fixed: windows over the whole recording, silence and music included; vad: a voice activity detector "
        f"finds the speech first and only speech is predicted (pip install 'emosphere[vad]'); default {default}: "
        f"{why}",
    )  # fmt: skip
    group.add_argument(
        "--vad-threshold", type=PROBABILITY, default=0.5, help="speech probability that starts speech (default 0.5)"
    )
    group.add_argument(
        "--min-speech", type=NON_NEGATIVE, default=0.25, help="speech shorter than this is dropped, s (default 0.25)"
    )
    group.add_argument(
        "--min-silence", type=NON_NEGATIVE, default=0.5,
        help="pauses shorter than this stay inside a speech region, s (default 0.5)",
    )  # fmt: skip
    group.add_argument(
        "--speech-pad", type=NON_NEGATIVE, default=0.1,
        help="audio kept before and after each region's speech, s; at most half --min-silence (default 0.1)",
    )  # fmt: skip
    group.add_argument(
        "--max-region", type=POSITIVE, default=60.0,
        help="longer speech regions are cut into pieces of at most this, s (default 60)",
    )  # fmt: skip


def vad_settings(args: argparse.Namespace):
    """The :class:`emosphere.vad.VadSettings` of the options :func:`add_segments` added."""
    from .vad import VadSettings

    return VadSettings(
        threshold=args.vad_threshold, min_speech=args.min_speech, min_silence=args.min_silence, pad=args.speech_pad,
        max_region=args.max_region,
    )  # fmt: skip
