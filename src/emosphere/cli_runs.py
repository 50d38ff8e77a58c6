"""The training-run commands: ``train``, ``evaluate``, ``compare``, ``report`` and ``ablate``; each owns its
arguments."""

from __future__ import annotations

import argparse
from pathlib import Path

from .cli_options import (
    DEVICE,
    POSITIVE_INT,
    add_corpus,
    add_intervals,
    add_model,
    add_overrides,
    add_quiet,
    corpus_from,
    deprecated,
    intervals_from,
    log,
)


def register(commands: argparse._SubParsersAction) -> None:
    _add_train(commands)
    _add_evaluate(commands)
    _add_compare(commands)
    _add_report(commands)
    _add_ablate(commands)


def _add_train(commands: argparse._SubParsersAction) -> None:
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


def _add_evaluate(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "evaluate",
        help="evaluate a model on a labelled split",
        description="CCC per dimension and mean (over the whole split), region accuracy, macro-F1 and UAR, each "
        "with a 95%% bootstrap interval. Writes metrics.json, predictions.csv (challenge format) and "
        "predictions_full.csv, on the rating scale of the corpus (1-7 for MSP-Podcast). --corpus evaluates on "
        "another corpus, a folder or a manifest (cross-corpus; docs/corpora.md).",
    )
    add_model(p, onnx=False, batch_size=16)
    add_corpus(p, required=False)
    p.add_argument("--split", default="Development", help="Split_Set to evaluate (default: Development)")
    p.add_argument(
        "--keep-other", action=argparse.BooleanOptionalAction, default=None,
        help="keep O/X rows (default: as the model was trained)",
    )  # fmt: skip
    add_intervals(p)
    p.add_argument("--output", type=Path, help="folder to write to (default: <model>/../eval_<split>)")
    deprecated(p, "--output-dir", "--output", type=Path)
    add_quiet(p)
    p.set_defaults(func=evaluate)


def _add_compare(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "compare",
        help="compare systems on the same files: paired bootstrap of their CCC differences",
        description="The paired bootstrap of each system's CCC (per dimension and mean) against the first's, on "
        "the same resampled files: the difference, its 95%% interval and a two-sided p-value, as markdown (printed) "
        "and CSV. A system is a run directory or a model directory (evaluated on --split, reusing eval_<split>/ "
        "when it is fresh) or a prediction table (predictions_full.csv of emosphere evaluate). Files that one "
        "system has and another lacks are refused, by name. See docs/intervals.md.",
    )
    p.add_argument(
        "systems", nargs="+", metavar="SYSTEM",
        help="run directory, model directory or prediction table; the first is the reference",
    )  # fmt: skip
    p.add_argument("--split", default="Development", help="split the systems are evaluated on (default: Development)")
    add_corpus(p, required=False)
    add_intervals(p)
    p.add_argument("--output", type=Path, help="folder for comparison.csv and comparison.md (default: print only)")
    p.add_argument("--batch-size", type=POSITIVE_INT, default=16, help="windows per batch if evaluating (default 16)")
    p.add_argument("--device", type=DEVICE, default="cpu", help="torch device if evaluating (default cpu)")
    p.set_defaults(func=compare)


def _add_report(commands: argparse._SubParsersAction) -> None:
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


def _add_ablate(commands: argparse._SubParsersAction) -> None:
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
    from .evaluate import evaluate_model, format_metrics, write_evaluation

    metrics, predictions = evaluate_model(
        args.model, args.split, corpus=corpus_from(args), keep_other=args.keep_other,
        options=Options(batch_size=args.batch_size, workers=args.workers), device=args.device,
        precision=args.precision, progress=not args.quiet, intervals=intervals_from(args),
    )  # fmt: skip
    output = args.output or Path(args.model).parent / f"eval_{args.split}"
    write_evaluation(metrics, predictions, output)
    print(format_metrics(metrics))
    scale = f"{predictions['scale_min'].iloc[0]:g}-{predictions['scale_max'].iloc[0]:g}"
    print(f"wrote {output}/metrics.json, predictions.csv (FileName,EmoAct,EmoVal,EmoDom on {scale}), "
          "predictions_full.csv")  # fmt: skip
    for skipped in metrics["skipped"]:
        log.warning("skipped %s: %s", skipped["file"], skipped["error"])
    return 1 if metrics["skipped"] else 0


def compare(args: argparse.Namespace) -> int:
    from .compare import compare_systems, system_predictions

    if len(args.systems) < 2:
        from .errors import UserError

        raise UserError("compare: give two or more systems; the first is the reference")
    corpus = corpus_from(args)
    tables = {
        name: system_predictions(name, args.split, corpus=corpus, batch_size=args.batch_size, device=args.device)
        for name in args.systems
    }
    table, markdown = compare_systems(tables, intervals_from(args))
    print(markdown)
    if args.output:
        from .io import write_table, write_text_atomic

        write_table(table, args.output / "comparison.csv")
        write_text_atomic(args.output / "comparison.md", markdown)
        print(f"wrote {args.output}/comparison.csv and comparison.md")
    return 0


def report(args: argparse.Namespace) -> int:
    import importlib.util

    from .errors import missing_extra

    if importlib.util.find_spec("matplotlib") is None:
        raise missing_extra("the report", "matplotlib", "report")
    from .report import write_report

    page = write_report(
        args.run_dir, args.output, split=args.split, corpus=corpus_from(args), batch_size=args.batch_size,
        device=args.device,
    )  # fmt: skip
    print(f"wrote {page} and its PNGs")
    return 0


def ablate(args: argparse.Namespace) -> int:
    from .ablate import check_data, load_set, plan, run_set, tabulate
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
    csv_path, md_path = tabulate(aset, args.overrides)
    print(md_path.read_text())
    print(f"wrote {csv_path} and {md_path}")
    for variant, error in failed:
        print(f"variant {variant.name} (seed {variant.seed}) failed: {error}")
    return 1 if failed else 0
