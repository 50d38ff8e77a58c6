"""The commands that use a trained model: ``predict``, ``timeline``, ``export``, ``serve`` and
``import-original``; each owns its arguments."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
from pathlib import Path

from .cli_options import (
    COUNT,
    NON_NEGATIVE,
    POSITIVE,
    POSITIVE_INT,
    add_model,
    add_quiet,
    add_segments,
    log,
    vad_settings,
)


def register(commands: argparse._SubParsersAction) -> None:
    _add_predict(commands)
    _add_timeline(commands)
    _add_export(commands)
    _add_serve(commands)
    _add_import_original(commands)


def _add_predict(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "predict",
        help="predict arousal, valence, dominance (and region) for audio files",
        description="Predict every input: audio files, folders (searched recursively by audio extension), "
        "manifests (.csv, .jsonl or .parquet with a path, file or FileName column, and start and end columns for "
        "segments of files; or .txt/.lst with one path a line) and glob patterns. Audio longer than a window gets "
        "one row per window plus a file row that aggregates them. Unreadable or too short files are listed in <output "
        "stem>.errors.csv. Exit code 0: all predicted, 1: some files failed, 2: usage error. Several processes: "
        "torchrun --nproc-per-node N -m emosphere predict ... See docs/predict.md and docs/annotate.md.",
    )
    p.add_argument(
        "inputs", nargs="+", metavar="INPUT",
        help="audio file, folder, list file, manifest table (optionally with start and end columns: segments) or "
        "glob pattern",
    )  # fmt: skip
    add_model(p)
    p.add_argument(
        "--output", required=True, type=Path,
        help="output table: CSV, or JSON lines (.jsonl) or parquet (.parquet) by extension",
    )  # fmt: skip
    add_windows(p)
    p.add_argument(
        "--threads", type=POSITIVE_INT,
        help="CPU threads per process (default: the engine's choice for one process; the cores shared among the "
        "processes of the node under torchrun)",
    )  # fmt: skip
    p.add_argument(
        "--resume", action="store_true",
        help="keep the sources already in --output (or in its unmerged parts), predict only the others",
    )  # fmt: skip
    add_segments(p, "fixed", "the numbers evaluate and serve give, for utterances; use vad for long recordings")
    add_quiet(p)
    p.set_defaults(func=predict)


def _add_timeline(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "timeline",
        help="emotion over time: a table and a picture for each recording, and a page for the run",
        description="For each recording (inputs as for predict): OUTPUT/<name>.csv with the rows emosphere predict "
        "writes (speech regions and their windows: start and end in seconds, arousal, valence, dominance on 1-7, the "
        "region and its probabilities), OUTPUT/<name>.png (the three values over time, speech shaded, the region band "
        "under it) and OUTPUT/index.html, one self-contained page listing the recordings with their pictures. Files "
        "are read in blocks: an hour-long recording runs in bounded memory. Exit code 0: all done, 1: some "
        "recordings failed (listed on the page), 2: usage error. See docs/timeline.md.",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="audio file, folder, list file, manifest or glob pattern")
    add_model(p)
    p.add_argument("--output", required=True, type=Path, help="output folder (created; files in it are replaced)")
    add_windows(p)
    add_segments(p, "vad", "a timeline is for recordings with pauses, music or noise, which get no values")
    add_quiet(p)
    p.set_defaults(func=timeline)


def _add_export(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "export",
        help="export a model to ONNX for onnxruntime",
        description="Write the whole model (audio normalisation, encoder, pooling, heads) as one ONNX file: raw "
        "16 kHz waveform and lengths in, arousal, valence, dominance on [0, 1] (and region logits) out, any batch "
        "size and length. Use it with emosphere predict --model FILE.onnx. See docs/onnx.md.",
    )
    p.add_argument("--model", required=True, help="model directory or Hugging Face hub id")
    p.add_argument("--output", required=True, type=Path, help="output file, e.g. model.onnx")
    p.add_argument("--opset", type=POSITIVE_INT, help="ONNX opset version (default: the exporter's)")
    p.add_argument(
        "--quantize", choices=["int8"],
        help="int8: store the encoder's linear layers in 8 bits (onnxruntime dynamic quantisation), faster on "
        "CPUs, slightly different outputs (docs/onnx.md); default: fp32",
    )  # fmt: skip
    p.add_argument("--format", choices=["onnx"], help=argparse.SUPPRESS)  # <= 0.1: ONNX is the only format
    p.set_defaults(func=export)


def _add_serve(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "serve",
        help="serve a model over HTTP, with a web page to try it",
        description="An HTTP service: POST /predict (multipart field file: an audio file) answers JSON with "
        "arousal, valence, dominance (1-7 and [0, 1]), r/theta/phi, the region and its probabilities, and "
        "per-window values for long audio; GET / is a web page to upload or record audio; GET /health; GET "
        "/openapi.json. On a GPU, concurrent requests are batched together. Needs pip install 'emosphere[serve]'. "
        "See docs/serve.md.",
    )
    add_model(p)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=COUNT, default=8000, help="port to listen on (default 8000; 0: any free port)")
    p.add_argument(
        "--batch-wait-ms", type=NON_NEGATIVE, default=5.0,
        help="how long the model waits for other requests to batch with the first (default 5 ms)",
    )  # fmt: skip
    p.add_argument(
        "--batching", choices=["auto", "on", "off"], default="auto",
        help="batch concurrent requests together on the model: auto (default) on a GPU only, where it pays; on a "
        "CPU one request at a time answers more (docs/benchmarks.md)",
    )  # fmt: skip
    p.add_argument("--max-upload-mb", type=POSITIVE, default=50.0, help="largest upload in MiB (default 50)")
    p.add_argument("--max-seconds", type=POSITIVE, default=600.0, help="longest audio in seconds (default 600)")
    p.add_argument(
        "--max-pending", type=POSITIVE_INT, default=64,
        help="uploads that may wait for the model; more are answered 503 (default 64)",
    )  # fmt: skip
    p.add_argument(
        "--lanes", type=POSITIVE_INT, default=2,
        help="threads that run the model, a batch of windows each: a short upload takes a free lane while a long "
        "one runs (default 2)",
    )  # fmt: skip
    live = p.add_argument_group("live streams (WebSocket /stream)")
    live.add_argument("--stream-hop", type=POSITIVE, default=1.0, help="seconds between a stream's answers (default 1)")
    live.add_argument(
        "--stream-context", type=POSITIVE,
        help="longest stretch of speech an answer covers, seconds (default: the window, 12)",
    )  # fmt: skip
    live.add_argument(
        "--max-streams", type=POSITIVE_INT, default=4, help="streams open at once; more are refused (default 4)"
    )
    p.set_defaults(func=serve)


def _add_import_original(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "import-original",
        help="turn the original recipe's checkpoints into a model directory",
        description="Import a checkpoint set written by the authors' EmoSphere-SER training script or by the "
        "MSP-Podcast challenge baseline (e.g. its published dim_ser.zip) into an emosphere model directory. See "
        "docs/import.md.",
    )
    p.add_argument("--ssl", required=True, type=Path, help="encoder state dict (best_ssl.pt / final_ssl.pt)")
    p.add_argument(
        "--pool", required=True,
        help="pooling state dict (best_pool.pt / final_pool.pt): MelStyleEncoder or AttentiveStatisticsPooling, "
        "recognised by its keys; the word mean for MeanPooling",
    )  # fmt: skip
    p.add_argument(
        "--ser", required=True, type=Path,
        help="regression head state dict (best_dim_ser.pt / final_ser.pt), outputs arousal, dominance, valence "
        "on [0, 1]",
    )  # fmt: skip
    p.add_argument(
        "--aux", type=Path, help="auxiliary octant head state dict (best_sev_ser.pt); without it, no region head"
    )
    p.add_argument("--stats", required=True, type=Path, help="waveform statistics pickle (train_norm_stat.pkl)")
    p.add_argument(
        "--encoder", default="microsoft/wavlm-large",
        help="hub id or local transformers directory whose config gives the encoder's architecture; the weights "
        "always come from --ssl (default microsoft/wavlm-large)",
    )  # fmt: skip
    p.add_argument("--output", required=True, type=Path, help="new model directory to write")
    p.set_defaults(func=import_original)


def add_windows(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--window", type=POSITIVE,
        help="window length in seconds; longer audio is cut into windows (default: the model's training crop, 12)",
    )  # fmt: skip
    parser.add_argument("--hop", type=POSITIVE, help="seconds between window starts (default: half the window)")


def _options(args: argparse.Namespace):
    from .engine import Options

    return Options(
        batch_size=args.batch_size, workers=args.workers, window=getattr(args, "window", None),
        hop=getattr(args, "hop", None),
    )  # fmt: skip


def predict(args: argparse.Namespace) -> int:
    from .load import load_predictor
    from .names import readable
    from .predict import errors_path, predict_to_file
    from .ranks import Ranks
    from .segments import with_segments

    settings = vad_settings(args)
    ranks = Ranks.from_env()
    with ranks.joined():
        predictor = load_predictor(
            args.model, _options(args), backend=args.backend, device=ranks.device(args.device),
            precision=args.precision, threads=args.threads or ranks.threads(),
        )  # fmt: skip
        predictor = with_segments(predictor, args.segments, settings)
        summary = predict_to_file(
            predictor, args.inputs, args.output, resume=args.resume, ranks=ranks, progress=not args.quiet
        )
    if ranks.rank == 0:
        hours = summary.audio_seconds / 3600
        rate = hours / max(summary.seconds / 3600, 1e-9)
        kept = f" ({summary.kept} kept from an earlier run, {summary.sources} predicted now)" if summary.kept else ""
        print(
            f"wrote {readable(args.output)}: {summary.kept + summary.sources} source(s){kept}, {hours:.3f} h of audio "
            f"predicted in {summary.seconds:.1f} s ({rate:.0f} h of audio per hour, {ranks.world} process(es))"
        )
        if summary.failed:
            print(f"{summary.failed} source(s) could not be predicted, listed in {readable(errors_path(args.output))}")
    return 1 if summary.failed else 0


def timeline(args: argparse.Namespace) -> int:
    from .load import load_predictor
    from .segments import with_segments
    from .timeline import PAGE, write_timelines

    settings = vad_settings(args)
    predictor = load_predictor(
        args.model, _options(args), backend=args.backend, device=args.device, precision=args.precision
    )
    summary = write_timelines(
        with_segments(predictor, args.segments, settings), args.inputs, args.output, progress=not args.quiet
    )
    print(
        f"wrote {args.output / PAGE} and a table and a picture for each of {len(summary.recordings)} recording(s)"
        + (f"; {len(summary.failures)} could not be predicted (listed on the page)" if summary.failures else "")
    )
    return 1 if summary.failures else 0


def export(args: argparse.Namespace) -> int:
    from .errors import UserError, missing_extra

    try:
        import onnx

        from .export import export_onnx
    except ImportError as error:
        raise missing_extra("ONNX export", "onnx and onnxscript", "onnx", error) from None
    from .model import EmoSphereSER

    if args.format:
        log.warning("--format is deprecated and will be removed (ONNX is the only format)")
    if args.opset is not None and args.opset > onnx.defs.onnx_opset_version():
        raise UserError(f"--opset {args.opset}: the installed onnx knows opsets up to {onnx.defs.onnx_opset_version()}")
    model = EmoSphereSER.from_pretrained(args.model)
    path = export_onnx(model, args.output, opset=args.opset, quantize=args.quantize)
    outputs = "avd, region_logits" if model.region_head is not None else "avd"
    print(
        f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB{', ' + args.quantize if args.quantize else ''}; "
        f"inputs waveform, lengths; outputs {outputs}; see docs/onnx.md)"
    )
    return 0


def serve(args: argparse.Namespace) -> int:
    from .errors import missing_extra

    try:
        from .serve import Settings, create_app, listen, server
        from .stream import StreamSettings
    except ImportError as error:
        raise missing_extra(
            "emosphere serve", "fastapi, uvicorn, python-multipart and websockets", "serve", error
        ) from None
    from .backends import TorchBackend
    from .load import load_predictor

    settings = Settings(
        batch_wait=args.batch_wait_ms / 1000, cross_request=args.batching != "off",
        max_upload_mb=args.max_upload_mb, max_seconds=args.max_seconds, max_pending=args.max_pending,
        lanes=args.lanes,
    )  # fmt: skip
    stream = StreamSettings(hop=args.stream_hop, context=args.stream_context, max_streams=args.max_streams)
    with listen(args.host, args.port) as sock:
        predictor = load_predictor(
            args.model, _options(args), backend=args.backend, device=args.device, precision=args.precision
        )
        if args.batching == "auto":  # batching pays on GPUs; on CPUs one request already fills the cores
            backend = predictor.backend
            on_gpu = isinstance(backend, TorchBackend) and backend.device.type == "cuda"
            settings = dataclasses.replace(settings, cross_request=on_gpu)
        host, port = sock.getsockname()[:2]
        print(
            f"serving {args.model} on http://{host}:{port}/ (the page), POST /predict, WebSocket /stream, GET /health, "
            f"GET /openapi.json; cross-request batching {'on' if settings.cross_request else 'off'}; Ctrl-C stops",
            flush=True,
        )
        with contextlib.suppress(KeyboardInterrupt):  # uvicorn stops cleanly, then re-raises the Ctrl-C
            server(create_app(predictor, settings, str(args.model), stream), sock).run(sockets=[sock])
    return 0


def import_original(args: argparse.Namespace) -> int:
    from .original import import_original as import_checkpoints

    output = import_checkpoints(
        ssl=args.ssl, pool=args.pool, ser=args.ser, aux=args.aux, stats=args.stats, encoder=args.encoder,
        output=args.output,
    )  # fmt: skip
    print(
        f"wrote the model directory {output} (see {output}/imported_from.json); "
        f"try: emosphere predict --model {output} --output predictions.csv <audio>"
    )
    return 0
