"""The ``emosphere`` command: prepare, check, train, evaluate, predict, export, serve, demo-corpus,
report, ablate, import-original.

Exit codes: 0 done; 1 some files of a batch job failed (listed in its errors
file); 2 a mistake in what the user gave (options, config, paths, data): one
line on stderr, no traceback, and checked before anything is written. Any
other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import math
import sys
import typing
from pathlib import Path

from . import __version__
from .config import Bounds, InferencePrecision, RegionSetName

REGION_SETS = typing.get_args(RegionSetName)
PRECISIONS = typing.get_args(InferencePrecision)
log = logging.getLogger("emosphere")


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


def _add_corpus_options(parser: argparse.ArgumentParser, required: bool) -> None:
    parser.add_argument(
        "--corpus",
        required=required,
        type=Path,
        help="corpus folder in the MSP-Podcast layout (Audios/, Labels/labels_consensus.csv)",
    )
    parser.add_argument("--labels", type=Path, help="label CSV (default: <corpus>/Labels/labels_consensus.csv)")
    parser.add_argument("--audio-dir", type=Path, help="audio folder (default: <corpus>/Audios)")


def _add_model_options(parser: argparse.ArgumentParser, *, onnx: bool) -> None:
    """How a model runs: --model (and --backend, where an exported ONNX file may run), --device, --precision."""
    if onnx:
        parser.add_argument(
            "--model",
            required=True,
            help="model directory or Hugging Face hub id; with --backend onnx, the exported .onnx file",
        )
        parser.add_argument(
            "--backend",
            choices=["torch", "onnx"],
            default="torch",
            help="run the model with PyTorch or ONNX Runtime (default torch)",
        )
    else:
        parser.add_argument("--model", required=True, type=Path, help="model directory (e.g. runs/demo/model)")
    parser.add_argument("--device", type=DEVICE, default="cpu", help="torch device, e.g. cpu or cuda (default cpu)")
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="fp32",
        help="fp32 (exact; TF32 off on GPUs) or bf16/fp16 autocast, faster on GPUs (default fp32)",
    )


def _add_decoding_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--num-workers",
        type=COUNT,
        default=0,
        help="threads that decode audio ahead of the model (default 0: decode in the main thread)",
    )


def cmd_prepare(args: argparse.Namespace) -> int:
    from .io import check_table_path, write_table
    from .labels import Corpus, counts, prepare_labels
    from .sphere import RegionSet

    regions = RegionSet(args.regions, args.origin_radius)
    output = args.output or Path(args.corpus) / "Labels" / f"processed_labels_{args.regions}.csv"
    check_table_path(output)
    table = prepare_labels(
        Corpus.at(args.corpus, args.labels, args.audio_dir),
        regions,
        keep_other=args.keep_other,
        progress=not args.quiet,
    )
    write_table(table, output)
    print(f"wrote {len(table)} rows to {output}")
    print(f"utterances per region ({regions.name}, {regions.num_classes} classes) and split:")
    print(counts(table, regions).to_string())
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from .check import check_corpus, log_problems, preflight
    from .config import ConfigError, load_config
    from .io import check_table_path, write_table
    from .labels import Corpus
    from .sphere import RegionSet

    if args.problems:
        check_table_path(args.problems)
    if args.corpus is not None and args.overrides:
        raise ConfigError(f"KEY=VALUE overrides ({' '.join(args.overrides)}) go with --config, not --corpus")
    if args.config is not None:
        report = preflight(
            load_config(args.config, args.overrides), resume=args.resume, decode=args.decode, progress=not args.quiet
        )
    else:
        splits = None if args.splits == ["all"] else args.splits
        report = check_corpus(
            Corpus.at(args.corpus, args.labels, args.audio_dir),
            RegionSet(args.regions, args.origin_radius),
            splits=splits,
            keep_other=args.keep_other,
            decode=args.decode,
            workers=args.workers,
            progress=not args.quiet,
        )
        log_problems(report)
    print(report.summary())
    if args.problems:
        write_table(report.problems, args.problems)
        print(f"wrote {len(report.problems)} problem(s) to {args.problems}")
    report.raise_for_errors()
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from .config import load_config
    from .evaluate import evaluate, format_metrics, write_evaluation
    from .io import read_table
    from .labels import split
    from .model import EmoSphereSER
    from .train import train

    config = load_config(args.config, args.overrides)
    model_dir = train(config, resume=args.resume)
    if args.no_eval or model_dir is None:  # None: a process of a multi-process run other than the first
        return 0
    model = EmoSphereSER.from_pretrained(model_dir)
    rows = split(read_table(Path(config.output_dir) / "labels.csv"), config.data.dev_split)
    metrics, predictions = evaluate(model, rows, split=config.data.dev_split, batch_size=config.data.batch_size)
    write_evaluation(metrics, predictions, Path(config.output_dir) / f"eval_{config.data.dev_split}")
    print(f"model: {model_dir}")
    print(format_metrics(metrics))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluate import evaluate, format_metrics, write_evaluation
    from .labels import Corpus, LabelError, prepare_labels, split
    from .model import EmoSphereSER

    model = EmoSphereSER.from_pretrained(args.model, device=args.device)
    run_data = (model.run_config or {}).get("data", {})
    corpus = args.corpus or run_data.get("corpus")
    if not corpus and not args.labels:
        raise LabelError(f"{args.model}: the model's config names no corpus; give --corpus or --labels")
    same_corpus = args.corpus is None
    source = Corpus.at(
        corpus or ".",
        args.labels or (run_data.get("labels") if same_corpus else None),
        args.audio_dir or (run_data.get("audio_dir") if same_corpus else None),
    )
    keep_other = args.keep_other if args.keep_other is not None else run_data.get("keep_other", False)
    table = prepare_labels(source, model.regions, keep_other=keep_other, progress=not args.quiet)
    rows = split(table, args.split)
    metrics, predictions = evaluate(
        model,
        rows,
        split=args.split,
        batch_size=args.batch_size,
        workers=args.num_workers,
        device=args.device,
        precision=args.precision,
        progress=not args.quiet,
    )
    output = args.output_dir or Path(args.model).parent / f"eval_{args.split}"
    write_evaluation(metrics, predictions, output)
    print(format_metrics(metrics))
    print(f"wrote {output}/metrics.json, predictions.csv (FileName,EmoAct,EmoVal,EmoDom on 1-7), predictions_full.csv")
    for skipped in metrics["skipped"]:
        log.warning("skipped %s: %s", skipped["file"], skipped["error"])
    return 1 if metrics["skipped"] else 0


def cmd_predict(args: argparse.Namespace) -> int:
    from .predict import errors_path, load_backend, predict_to_file
    from .ranks import Ranks

    ranks = Ranks.from_env()
    with ranks.joined():
        backend = load_backend(
            args.model, args.backend, ranks.device(args.device), args.precision, threads=args.threads or ranks.threads()
        )
        summary = predict_to_file(
            backend,
            args.inputs,
            args.output,
            resume=args.resume,
            ranks=ranks,
            progress=not args.quiet,
            batch_size=args.batch_size,
            window=args.window,
            hop=args.hop,
            workers=args.num_workers,
        )
    if ranks.rank == 0:
        hours = summary.audio_seconds / 3600
        print(
            f"wrote {args.output}: {summary.sources} source(s), {hours:.3f} h of audio, in {summary.seconds:.1f} s "
            f"({hours / max(summary.seconds / 3600, 1e-9):.0f} h of audio per hour, {ranks.world} process(es))"
        )
        if summary.failed:
            print(f"{summary.failed} source(s) could not be predicted, listed in {errors_path(args.output)}")
    return 1 if summary.failed else 0


def cmd_export(args: argparse.Namespace) -> int:
    from .errors import UserError
    from .model import EmoSphereSER

    try:
        from .export import export_onnx
    except ImportError as error:
        log.error("ONNX export needs onnx and onnxscript (pip install 'emosphere[onnx]'): %s", error)
        return 2
    import onnx

    if args.opset is not None and args.opset > onnx.defs.onnx_opset_version():
        raise UserError(f"--opset {args.opset}: the installed onnx knows opsets up to {onnx.defs.onnx_opset_version()}")
    model = EmoSphereSER.from_pretrained(args.model)
    path = export_onnx(model, args.output, opset=args.opset, quantize=args.quantize)
    print(
        f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB{', ' + args.quantize if args.quantize else ''}; "
        f"inputs waveform, lengths; outputs avd{', region_logits' if model.region_head is not None else ''}; "
        "see docs/onnx.md)"
    )
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from .errors import UserError
    from .predict import load_backend

    try:
        from .serve import Settings, create_app, listen, server
    except ImportError as error:
        raise UserError(
            f"emosphere serve needs fastapi, uvicorn and python-multipart: pip install 'emosphere[serve]' ({error})"
        ) from None
    settings = Settings(
        batch_size=args.batch_size,
        batch_wait=args.batch_wait_ms / 1000,
        cross_request=args.batching != "off",
        max_upload_mb=args.max_upload_mb,
        max_seconds=args.max_seconds,
        max_pending=args.max_pending,
    )
    with listen(args.host, args.port) as sock:
        backend = load_backend(args.model, args.backend, args.device, args.precision)
        if args.batching == "auto":  # batching pays on GPUs; on CPUs one request already fills the cores
            settings = dataclasses.replace(
                settings, cross_request=args.backend == "torch" and backend.device.type == "cuda"
            )
        host, port = sock.getsockname()[:2]
        print(
            f"serving {args.model} on http://{host}:{port}/ (the page), POST /predict, GET /health, "
            f"GET /openapi.json; cross-request batching {'on' if settings.cross_request else 'off'}; "
            "Ctrl-C stops",
            flush=True,
        )
        with contextlib.suppress(KeyboardInterrupt):  # uvicorn stops cleanly, then re-raises the Ctrl-C
            server(create_app(backend, settings, model_name=str(args.model)), sock).run(sockets=[sock])
    return 0


def cmd_demo_corpus(args: argparse.Namespace) -> int:
    from .demo import make_demo_corpus

    root = make_demo_corpus(
        args.output, n_train=args.n_train, n_dev=args.n_dev, n_test=args.n_test, seed=args.seed, progress=not args.quiet
    )
    print(f"demo corpus written to {root}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        log.error("the report needs matplotlib: pip install 'emosphere[report]'")
        return 2
    from .report import write_report

    page = write_report(args.run_dir, args.output, split=args.split, batch_size=args.batch_size, device=args.device)
    print(f"wrote {page} and its PNGs")
    return 0


def cmd_ablate(args: argparse.Namespace) -> int:
    from .ablate import check_data, collect, load_set, plan, run_set, table_plan, write_tables
    from .config import ConfigError

    aset = load_set(args.set)
    if args.output_dir:
        aset.output_dir = args.output_dir
    try:
        seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else None
    except ValueError:
        raise ConfigError(f"--seeds {args.seeds}: expected comma-separated integers") from None
    variants = plan(aset, args.overrides, args.variants.split(",") if args.variants else None, seeds)
    if not args.collect_only:
        check_data(variants)
    failed = [] if args.collect_only else run_set(aset, variants, args.overrides, device=args.device)
    csv_path, md_path = write_tables(collect(aset, table_plan(aset, args.overrides)), aset.output_dir, aset.split)
    print(md_path.read_text())
    print(f"wrote {csv_path} and {md_path}")
    for variant, error in failed:
        print(f"variant {variant.name} (seed {variant.seed}) failed: {error}")
    return 1 if failed else 0


def cmd_import_original(args: argparse.Namespace) -> int:
    from .original import import_original

    output = import_original(
        ssl=args.ssl,
        pool=args.pool,
        ser=args.ser,
        aux=args.aux,
        stats=args.stats,
        encoder=args.encoder,
        output=args.output,
    )
    print(
        f"wrote the model directory {output} (see {output}/imported_from.json); "
        f"try: emosphere predict --model {output} --output predictions.csv <audio>"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="emosphere",
        description="EmoSphere-SER: arousal, valence and dominance (1-7 scale) from speech, "
        "with an auxiliary classifier of the emotion's region on a sphere.",
    )
    parser.add_argument("--version", action="version", version=f"emosphere {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = commands.add_parser(
        "prepare",
        help="prepare an MSP-Podcast label table with sphere regions",
        description="Read labels_consensus.csv, keep labelled rows with readable audio, add "
        "targets on [0, 1], spherical coordinates and regions, write the table and "
        "print counts per split and region.",
    )
    _add_corpus_options(p, required=True)
    p.add_argument(
        "--regions",
        choices=REGION_SETS,
        default="octant",
        help="region set: octant (8 classes, the paper) or a sphereN grid of N-degree cells plus an "
        "origin class (default: octant)",
    )
    p.add_argument(
        "--origin-radius",
        type=NON_NEGATIVE,
        default=0.0,
        help="sphereN: centred radius up to which a point is in the origin class (default 0)",
    )
    p.add_argument(
        "--keep-other",
        action="store_true",
        help="keep EmoClass O (other) and X (no agreement) rows; the paper recipe drops them",
    )
    p.add_argument("--output", type=Path, help="output CSV (default: <corpus>/Labels/processed_labels_<regions>.csv)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_prepare)

    p = commands.add_parser(
        "check",
        help="check a corpus (or a training run's config and corpus) before training",
        description="Report every problem of a corpus at once, with line numbers of the label "
        "table, and a summary (hours per split, utterances per region and class, "
        "sample rates). Errors (bad labels, repeated FileName, listed audio missing, "
        "unreadable or too short, a needed split empty) block training: exit 2. "
        "Warnings (audio not in the table, unknown Split_Set or EmoClass) do not. "
        "Reads audio headers only unless --decode. With --config, runs training's "
        "whole pre-flight. See docs/check.md.",
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--corpus", type=Path, help="corpus folder in the MSP-Podcast layout (Audios/, Labels/labels_consensus.csv)"
    )
    source.add_argument(
        "--config",
        type=Path,
        help="YAML recipe: check what `emosphere train` would check (config, paths, encoder, the "
        "training and development splits)",
    )
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, with --config")
    p.add_argument("--labels", type=Path, help="label CSV (default: <corpus>/Labels/labels_consensus.csv)")
    p.add_argument("--audio-dir", type=Path, help="audio folder (default: <corpus>/Audios)")
    p.add_argument(
        "--splits",
        nargs="+",
        default=["all"],
        metavar="SPLIT",
        help="with --corpus: the Split_Set values to check as a run would read them (labelled rows, "
        "O/X only with --keep-other); default all: every row of the table",
    )
    p.add_argument(
        "--regions",
        choices=REGION_SETS,
        default="octant",
        help="with --corpus: region set of the summary (default: octant)",
    )
    p.add_argument(
        "--origin-radius", type=NON_NEGATIVE, default=0.0, help="with --corpus: sphereN origin radius (default 0)"
    )
    p.add_argument("--keep-other", action="store_true", help="with --corpus --splits: keep EmoClass O and X rows")
    p.add_argument("--resume", action="store_true", help="with --config: also require the checkpoint to resume from")
    p.add_argument(
        "--decode",
        action="store_true",
        help="decode every file instead of reading headers: also finds corrupt or truncated audio and "
        "NaN samples (as slow as reading the corpus once)",
    )
    p.add_argument(
        "--workers", type=POSITIVE_INT, default=8, help="with --corpus: threads reading audio headers (default 8)"
    )
    p.add_argument(
        "--problems",
        type=Path,
        help="write every problem to this table (.csv, .jsonl or .parquet): severity, problem, file, line, detail",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_check)

    p = commands.add_parser(
        "train",
        help="train a model from a YAML recipe",
        description="Train as the recipe says; any key can be overridden as key.sub=value, e.g. "
        "trainer.max_epochs=2 data.corpus=/data/MSP-Podcast. Writes the run folder "
        "(config.yaml, checkpoints/, logs/, model/) under output_dir, then evaluates "
        "the best model on the development split.",
    )
    p.add_argument("--config", type=Path, help="YAML recipe, e.g. recipes/msp_podcast/emosphere_ser.yaml")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides (values parsed as YAML)")
    p.add_argument("--resume", action="store_true", help="resume from <output_dir>/checkpoints/last.ckpt")
    p.add_argument("--no-eval", action="store_true", help="skip the final evaluation on the development split")
    p.set_defaults(func=cmd_train)

    p = commands.add_parser(
        "evaluate",
        help="evaluate a model on a labelled split",
        description="CCC per dimension and mean (1-7 scale, whole split), region accuracy, "
        "macro-F1 and UAR. Writes metrics.json, predictions.csv (challenge format) "
        "and predictions_full.csv.",
    )
    _add_model_options(p, onnx=False)
    _add_corpus_options(p, required=False)
    p.add_argument("--split", default="Development", help="Split_Set to evaluate (default: Development)")
    p.add_argument(
        "--keep-other",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="keep O/X rows (default: as the model was trained)",
    )
    p.add_argument("--output-dir", type=Path, help="where to write (default: <model>/../eval_<split>)")
    p.add_argument("--batch-size", type=POSITIVE_INT, default=16, help="utterances per batch (default 16)")
    _add_decoding_option(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_evaluate)

    p = commands.add_parser(
        "predict",
        help="predict arousal, valence, dominance (and region) for audio files",
        description="Predict every input: audio files, folders (searched recursively by audio "
        "extension), manifests (.csv or .parquet with a path, file or FileName column, "
        "and start and end columns for segments of files; or .txt/.lst with one "
        "path a line) and glob patterns. Audio longer than a "
        "window gets one row per window plus a file row that aggregates them. "
        "Unreadable or too short files are listed in <output stem>.errors.csv. "
        "Exit code 0: all predicted, 1: some files failed, 2: usage error. "
        "Several processes: torchrun --nproc-per-node N -m emosphere predict ... "
        "See docs/predict.md and docs/annotate.md.",
    )
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="audio file, folder, list file, manifest table (optionally with start and end columns: "
        "segments) or glob pattern",
    )
    _add_model_options(p, onnx=True)
    p.add_argument(
        "--output",
        required=True,
        type=Path,
        help="output table: CSV, or JSON lines (.jsonl) or parquet (.parquet) by extension",
    )
    p.add_argument("--batch-size", type=POSITIVE_INT, default=8, help="windows per batch (default 8)")
    p.add_argument(
        "--window",
        type=POSITIVE,
        help="window length in seconds; longer audio is cut into windows (default 12, the training crop)",
    )
    p.add_argument("--hop", type=POSITIVE, help="seconds between window starts (default 6; at most the window)")
    _add_decoding_option(p)
    p.add_argument(
        "--threads",
        type=POSITIVE_INT,
        help="CPU threads per process (default: the engine's choice for one process; the cores shared "
        "among the processes of the node under torchrun)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="keep the sources already in --output (or in its unmerged parts), predict only the others",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_predict)

    p = commands.add_parser(
        "export",
        help="export a model to ONNX for onnxruntime",
        description="Write the whole model (audio normalisation, encoder, pooling, heads) as "
        "one ONNX file: raw 16 kHz waveform and lengths in, arousal, valence, "
        "dominance on [0, 1] (and region logits) out, any batch size and length. "
        "Use it with emosphere predict --backend onnx. See docs/onnx.md.",
    )
    p.add_argument("--model", required=True, help="model directory or Hugging Face hub id")
    p.add_argument("--format", choices=["onnx"], default="onnx", help="export format (default onnx, the only one)")
    p.add_argument("--output", required=True, type=Path, help="output file, e.g. model.onnx")
    p.add_argument("--opset", type=POSITIVE_INT, help="ONNX opset version (default: the exporter's)")
    p.add_argument(
        "--quantize",
        choices=["int8"],
        help="int8: store the encoder's linear layers in 8 bits (onnxruntime dynamic quantisation), "
        "faster on CPUs, slightly different outputs (docs/onnx.md); default: fp32",
    )
    p.set_defaults(func=cmd_export)

    p = commands.add_parser(
        "serve",
        help="serve a model over HTTP, with a web page to try it",
        description="An HTTP service: POST /predict (multipart field file: an audio file) "
        "answers JSON with arousal, valence, dominance (1-7 and [0, 1]), r/theta/phi, "
        "the region and its probabilities, and per-window values for long audio; "
        "GET / is a web page to upload or record audio; GET /health; "
        "GET /openapi.json. On a GPU, concurrent requests are batched together. "
        "Needs pip install 'emosphere[serve]'. See docs/serve.md.",
    )
    _add_model_options(p, onnx=True)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=COUNT, default=8000, help="port to listen on (default 8000; 0: any free port)")
    p.add_argument("--batch-size", type=POSITIVE_INT, default=8, help="windows per forward pass (default 8)")
    p.add_argument(
        "--batch-wait-ms",
        type=NON_NEGATIVE,
        default=5.0,
        help="how long the model waits for other requests to batch with the first (default 5 ms)",
    )
    p.add_argument(
        "--batching",
        choices=["auto", "on", "off"],
        default="auto",
        help="batch concurrent requests together on the model: auto (default) on a GPU only, where "
        "it pays; on a CPU one request at a time answers more (docs/benchmarks.md)",
    )
    p.add_argument("--max-upload-mb", type=POSITIVE, default=50.0, help="largest upload in MiB (default 50)")
    p.add_argument("--max-seconds", type=POSITIVE, default=600.0, help="longest audio in seconds (default 600)")
    p.add_argument(
        "--max-pending",
        type=POSITIVE_INT,
        default=64,
        help="uploads that may wait for the model; more are answered 503 (default 64)",
    )
    p.set_defaults(func=cmd_serve)

    p = commands.add_parser(
        "demo-corpus",
        help="synthesise the built-in demo corpus with espeak-ng",
        description="Write a small synthetic emotional-speech corpus in the MSP-Podcast layout "
        "(see docs/demo_corpus.md).",
    )
    p.add_argument("output", type=Path, help="output folder")
    p.add_argument("--n-train", type=COUNT, default=1200, help="training utterances (default 1200)")
    p.add_argument("--n-dev", type=COUNT, default=200, help="development utterances (default 200)")
    p.add_argument("--n-test", type=COUNT, default=300, help="Test1 utterances (default 300)")
    p.add_argument("--seed", type=COUNT, default=0, help="random seed (default 0)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_demo_corpus)

    p = commands.add_parser(
        "report",
        help="write an HTML report with plots of a training run",
        description="Plots of a run directory (training curves, predicted vs true, error by "
        "true value, region confusion, the sphere, CCC per gender and speaker) as "
        "PNGs and one self-contained report.html. Evaluates the split first when "
        "the run has no eval_<split>/ folder.",
    )
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="run directory written by emosphere train")
    p.add_argument("--output", required=True, type=Path, help="folder for report.html and the PNGs")
    p.add_argument("--split", help="split to report (default: the run's development split)")
    p.add_argument(
        "--batch-size", type=POSITIVE_INT, default=16, help="utterances per batch if evaluating (default 16)"
    )
    p.add_argument("--device", type=DEVICE, default="cpu", help="torch device if evaluating (default cpu)")
    p.set_defaults(func=cmd_report)

    p = commands.add_parser(
        "ablate",
        help="train the variants of an ablation set and compare them in a table",
        description="Train each variant of an ablation set (a base recipe plus overrides per "
        "variant, see recipes/ablations/) one after another, one run directory "
        "each; finished runs are skipped and interrupted ones resumed. Writes "
        "ablation.csv and ablation.md (CCC per dimension and mean, region metrics, "
        "time) in the set's output_dir. Exit code 1 if a variant failed.",
    )
    p.add_argument("set", type=Path, help="ablation set YAML, e.g. recipes/ablations/demo.yaml")
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="config overrides for every variant, e.g. data.corpus=/data/MSP-Podcast",
    )
    p.add_argument("--variants", help="comma-separated names of the variants to run (default: all)")
    p.add_argument(
        "--seeds",
        help="comma-separated seeds to run, e.g. 8,9 for more seeds of some variants "
        "(default: the set's); the table covers every seed that has run",
    )
    p.add_argument("--output-dir", type=Path, help="where the run directories and tables go (default: the set's)")
    p.add_argument("--collect-only", action="store_true", help="train nothing; only rebuild the table")
    p.add_argument(
        "--device",
        type=DEVICE,
        default=None,
        help="torch device that evaluates each variant (default: cuda when present, else cpu)",
    )
    p.set_defaults(func=cmd_ablate)

    p = commands.add_parser(
        "import-original",
        help="turn the original recipe's checkpoints into a model directory",
        description="Import a checkpoint set written by the authors' EmoSphere-SER training "
        "script or by the MSP-Podcast challenge baseline (e.g. its published "
        "dim_ser.zip) into an emosphere model directory. See docs/import.md.",
    )
    p.add_argument("--ssl", required=True, type=Path, help="encoder state dict (best_ssl.pt / final_ssl.pt)")
    p.add_argument(
        "--pool",
        required=True,
        help="pooling state dict (best_pool.pt / final_pool.pt): MelStyleEncoder or "
        "AttentiveStatisticsPooling, recognised by its keys; the word mean for MeanPooling",
    )
    p.add_argument(
        "--ser",
        required=True,
        type=Path,
        help="regression head state dict (best_dim_ser.pt / final_ser.pt), outputs arousal, dominance, "
        "valence on [0, 1]",
    )
    p.add_argument(
        "--aux", type=Path, help="auxiliary octant head state dict (best_sev_ser.pt); without it, no region head"
    )
    p.add_argument("--stats", required=True, type=Path, help="waveform statistics pickle (train_norm_stat.pkl)")
    p.add_argument(
        "--encoder",
        default="microsoft/wavlm-large",
        help="hub id or local transformers directory whose config gives the encoder's architecture; "
        "the weights always come from --ssl (default microsoft/wavlm-large)",
    )
    p.add_argument("--output", required=True, type=Path, help="new model directory to write")
    p.set_defaults(func=cmd_import_original)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # argparse stops collecting KEY=VALUE overrides at the first option; take the rest too.
    if (
        extra
        and getattr(args, "overrides", None) is not None
        and all("=" in e and not e.startswith("-") for e in extra)
    ):
        args.overrides += extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    for old in list(log.handlers):
        log.removeHandler(old)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.DEBUG if args.verbose else logging.INFO)
    log.propagate = False
    from .errors import UserError

    try:
        return args.func(args)
    except (UserError, OSError) as error:
        # A mistake in what the user gave, or a file system refusal (permissions, a full disk):
        # one line. Anything else is a bug and keeps its traceback.
        log.debug("traceback:", exc_info=True)
        log.error("%s", " ".join(str(error).split("\n")) or type(error).__name__)
        return 2


if __name__ == "__main__":
    sys.exit(main())
