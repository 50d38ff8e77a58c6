"""The training-run commands: ``train``, ``evaluate``, ``report`` and ``ablate``; each owns its arguments."""

from __future__ import annotations

import argparse
from pathlib import Path

from .cli_options import DEVICE, POSITIVE_INT, add_corpus, add_model, add_overrides, add_quiet, deprecated, log


def register(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "train",
        help="train a model from a YAML recipe",
        description="Train as the recipe says; any key can be overridden as key.sub=value, e.g. trainer.max_epochs=2 "
        "data.corpus=/data/MSP-Podcast. Writes the run folder (config.yaml, checkpoints/, logs/, model/) under "
        "output_dir, then evaluates the best model on the development split.",
    )
    p.add_argument("--config", type=Path, help="YAML recipe, e.g. recipes/msp_podcast/emosphere_ser.yaml")
    add_overrides(p)
    p.add_argument("--resume", action="store_true", help="resume from <output_dir>/checkpoints/last.ckpt")
    p.add_argument("--no-eval", action="store_true", help="skip the final evaluation on the development split")
    p.set_defaults(func=train)

    p = commands.add_parser(
        "evaluate",
        help="evaluate a model on a labelled split",
        description="CCC per dimension and mean (1-7 scale, whole split), region accuracy, macro-F1 and UAR. "
        "Writes metrics.json, predictions.csv (challenge format) and predictions_full.csv.",
    )
    add_model(p, onnx=False, batch_size=16)
    add_corpus(p, required=False)
    p.add_argument("--split", default="Development", help="Split_Set to evaluate (default: Development)")
    p.add_argument(
        "--keep-other", action=argparse.BooleanOptionalAction, default=None,
        help="keep O/X rows (default: as the model was trained)",
    )  # fmt: skip
    p.add_argument("--output", type=Path, help="folder to write to (default: <model>/../eval_<split>)")
    deprecated(p, "--output-dir", "--output", type=Path)
    add_quiet(p)
    p.set_defaults(func=evaluate)

    p = commands.add_parser(
        "report",
        help="write an HTML report with plots of a training run",
        description="Plots of a run directory (training curves, predicted vs true, error by true value, region "
        "confusion, the sphere, CCC per gender and speaker) as PNGs and one self-contained report.html. Evaluates "
        "the split first when the run has no eval_<split>/ folder (or it is older than the model).",
    )
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="run directory written by emosphere train")
    p.add_argument("--output", required=True, type=Path, help="folder for report.html and the PNGs")
    p.add_argument("--split", help="split to report (default: the run's development split)")
    add_corpus(p, required=False)
    p.add_argument("--batch-size", type=POSITIVE_INT, default=16, help="windows per batch if evaluating (default 16)")
    p.add_argument("--device", type=DEVICE, default="cpu", help="torch device if evaluating (default cpu)")
    p.set_defaults(func=report)

    p = commands.add_parser(
        "ablate",
        help="train the variants of an ablation set and compare them in a table",
        description="Train each variant of an ablation set (a base recipe plus overrides per variant, see "
        "recipes/ablations/) one after another, one run directory each; finished runs are skipped and "
        "interrupted ones resumed. Writes ablation.csv and ablation.md (CCC per dimension and mean, region "
        "metrics, time) in the set's output_dir. Exit code 1 if a variant failed.",
    )
    p.add_argument("set", type=Path, help="ablation set YAML, e.g. recipes/ablations/demo.yaml")
    add_overrides(p, "config overrides for every variant, e.g. data.corpus=/data/MSP-Podcast")
    p.add_argument("--variants", help="comma-separated names of the variants to run (default: all)")
    p.add_argument(
        "--seeds",
        help="comma-separated seeds to run, e.g. 8,9 for more seeds of some variants (default: the set's); the "
        "table covers every seed that has run",
    )
    p.add_argument("--output", type=Path, help="where the run directories and tables go (default: the set's)")
    deprecated(p, "--output-dir", "--output", type=Path)
    p.add_argument("--collect-only", action="store_true", help="train nothing; only rebuild the table")
    p.add_argument(
        "--device", type=DEVICE, default=None,
        help="torch device that evaluates each variant (default: cuda when present, else cpu)",
    )  # fmt: skip
    p.set_defaults(func=ablate)


def _corpus(args: argparse.Namespace):
    """The corpus that --corpus / --labels / --audio-dir name, or None."""
    from .labels import Corpus

    if args.corpus is None and args.labels is None:
        return None
    return Corpus.at(args.corpus or ".", args.labels, args.audio_dir)


def train(args: argparse.Namespace) -> int:
    from .config import load_config

    config = load_config(args.config, args.overrides)  # a mistake in the config answers before torch loads
    from .evaluate import evaluate_run, format_metrics
    from .rundir import RunDir
    from .train import train as train_run

    model_dir = train_run(config, resume=args.resume)
    if args.no_eval or model_dir is None:  # None: a process of a multi-process run other than the first
        return 0
    run = RunDir(model_dir.parent)
    metrics, _ = evaluate_run(run, config.data.dev_split, batch_size=config.data.batch_size)
    print(f"model: {model_dir}")
    print(format_metrics(metrics))
    return 0


def evaluate(args: argparse.Namespace) -> int:
    from .engine import Options
    from .evaluate import evaluate as evaluate_split
    from .evaluate import format_metrics, write_evaluation
    from .labels import Corpus, LabelError, prepare_labels, split
    from .load import load_predictor

    options = Options(batch_size=args.batch_size, workers=args.workers)
    predictor = load_predictor(args.model, options, backend="torch", device=args.device, precision=args.precision)
    model = predictor.backend.model
    run_data = (model.run_config or {}).get("data", {})
    if args.corpus is None and args.labels is None and not run_data.get("corpus"):
        raise LabelError(f"{args.model}: the model's config names no corpus; give --corpus or --labels")
    corpus = _corpus(args) or Corpus.at(
        run_data.get("corpus") or ".", run_data.get("labels"), run_data.get("audio_dir")
    )
    keep_other = args.keep_other if args.keep_other is not None else run_data.get("keep_other", False)
    table = prepare_labels(corpus, model.regions, keep_other=keep_other, progress=not args.quiet)
    rows = split(table, args.split)
    metrics, predictions = evaluate_split(predictor, rows, model.regions, split=args.split, progress=not args.quiet)
    output = args.output or Path(args.model).parent / f"eval_{args.split}"
    write_evaluation(metrics, predictions, output)
    print(format_metrics(metrics))
    print(f"wrote {output}/metrics.json, predictions.csv (FileName,EmoAct,EmoVal,EmoDom on 1-7), predictions_full.csv")
    for skipped in metrics["skipped"]:
        log.warning("skipped %s: %s", skipped["file"], skipped["error"])
    return 1 if metrics["skipped"] else 0


def report(args: argparse.Namespace) -> int:
    import importlib.util

    from .errors import missing_extra

    if importlib.util.find_spec("matplotlib") is None:
        raise missing_extra("the report", "matplotlib", "report")
    from .report import write_report

    page = write_report(
        args.run_dir, args.output, split=args.split, corpus=_corpus(args), batch_size=args.batch_size,
        device=args.device,
    )  # fmt: skip
    print(f"wrote {page} and its PNGs")
    return 0


def ablate(args: argparse.Namespace) -> int:
    from .ablate import check_data, collect, load_set, plan, run_set, table_plan, write_tables
    from .config import ConfigError

    aset = load_set(args.set)
    if args.output:
        aset.output_dir = args.output
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
