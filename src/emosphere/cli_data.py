"""The corpus commands: ``prepare``, ``check`` and ``demo-corpus``; each owns its arguments."""

from __future__ import annotations

import argparse
from pathlib import Path

from .cli_options import (
    COUNT,
    POSITIVE_INT,
    add_corpus,
    add_corpus_files,
    add_overrides,
    add_quiet,
    add_regions,
    add_workers,
    corpus_from,
    log,
)

FORMATS = ("iemocap", "msp-improv", "msp-podcast")
"""The label layouts ``prepare --format`` converts (:data:`emosphere.corpora.FORMATS`; not imported here,
so that ``emosphere --help`` stays fast)."""


def register(commands: argparse._SubParsersAction) -> None:
    _add_prepare(commands)
    _add_check(commands)
    _add_demo_corpus(commands)


def _add_prepare(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "prepare",
        help="prepare a label table with sphere regions, or convert a corpus's labels to a manifest",
        description="Without --format: read the corpus's labels (labels_consensus.csv, or a manifest), keep "
        "labelled rows with readable audio, add targets on [0, 1], spherical coordinates and regions, write the "
        "table and print counts per split and region. With --format: convert a corpus's published label layout "
        "(IEMOCAP, MSP-IMPROV, MSP-Podcast/BIIC-Podcast) to a manifest that train, evaluate and check read, every "
        "malformed or unknown line reported with its file and line (docs/corpora.md).",
    )
    add_corpus(p, required=True)
    p.add_argument(
        "--format", choices=FORMATS,
        help="the corpus's label layout, to convert it to a manifest at --output (default: prepare as above)",
    )  # fmt: skip
    p.add_argument(
        "--fold", type=POSITIVE_INT,
        help="with --format iemocap or msp-improv: the leave-one-session-out fold (Test: that session, "
        "Development: the one before); default: every utterance in Test (a whole corpus for cross-corpus tests)",
    )  # fmt: skip
    add_regions(p, "region set: octant (8 classes, the paper) or a sphereN grid of N-degree cells plus an "
                   "origin class (default: octant)")  # fmt: skip
    p.add_argument(
        "--keep-other", action="store_true",
        help="keep EmoClass O (other) and X (no agreement) rows; the paper recipe drops them",
    )  # fmt: skip
    p.add_argument(
        "--output", type=Path,
        help="output table (default: <corpus>/Labels/processed_labels_<regions>.csv; with --format, the manifest "
        "to write, required)",
    )  # fmt: skip
    add_quiet(p)
    p.set_defaults(func=prepare)


def _add_check(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "check",
        help="check a corpus (or a training run's config and corpus) before training",
        description="Report every problem of a corpus at once, with line numbers of the label table, and a "
        "summary (hours per split, utterances per region and class, sample rates). Errors (bad labels, repeated "
        "FileName, listed audio missing, unreadable or too short, a needed split empty) block training: exit 2. "
        "Warnings (audio not in the table, unknown Split_Set or EmoClass) do not. Reads audio headers only "
        "unless --decode. With --config, runs training's whole pre-flight. See docs/check.md.",
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--corpus", type=Path,
        help="corpus folder in the MSP-Podcast layout (Audios/, Labels/labels_consensus.csv), or a manifest",
    )  # fmt: skip
    source.add_argument(
        "--config", type=Path,
        help="YAML recipe: check what `emosphere train` would check (config, paths, encoder, the training and "
        "development splits)",
    )  # fmt: skip
    add_overrides(p, "config overrides, with --config")
    add_corpus_files(p)
    p.add_argument(
        "--splits", nargs="+", default=["all"], metavar="SPLIT",
        help="with --corpus: the Split_Set values to check as a run would read them (labelled rows, O/X only with "
        "--keep-other); default all: every row of the table",
    )  # fmt: skip
    add_regions(p, "with --corpus: region set of the summary (default: octant)")
    p.add_argument("--keep-other", action="store_true", help="with --corpus --splits: keep EmoClass O and X rows")
    p.add_argument("--resume", action="store_true", help="with --config: also require the checkpoint to resume from")
    p.add_argument(
        "--decode", action="store_true",
        help="decode every file instead of reading headers: also finds corrupt or truncated audio and NaN samples "
        "(as slow as reading the corpus once)",
    )  # fmt: skip
    add_workers(p, "with --corpus: threads reading audio headers (default 8)", 8)
    p.add_argument(
        "--problems", type=Path,
        help="write every problem to this table (.csv, .jsonl or .parquet): severity, problem, file, line, detail",
    )  # fmt: skip
    add_quiet(p)
    p.set_defaults(func=check)


def _add_demo_corpus(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "demo-corpus",
        help="synthesise the built-in demo corpus with espeak-ng",
        description="Write a small synthetic emotional-speech corpus in the MSP-Podcast layout "
        "(see docs/demo_corpus.md).",
    )
    p.add_argument("--output", type=Path, help="output folder, e.g. data/demo_corpus")
    p.add_argument("legacy_output", nargs="?", type=Path, help=argparse.SUPPRESS)  # the folder as a positional, <= 0.1
    p.add_argument("--n-train", type=COUNT, default=1200, help="training utterances (default 1200)")
    p.add_argument("--n-dev", type=COUNT, default=200, help="development utterances (default 200)")
    p.add_argument("--n-test", type=COUNT, default=300, help="Test1 utterances (default 300)")
    p.add_argument("--seed", type=COUNT, default=0, help="random seed (default 0)")
    p.add_argument("--workers", type=POSITIVE_INT, help="espeak-ng processes at once (default: one per core)")
    add_quiet(p)
    p.set_defaults(func=demo_corpus)


def prepare(args: argparse.Namespace) -> int:
    from .io import check_table_path, write_table
    from .labels import counts, prepare_labels
    from .sphere import RegionSet

    if args.format:
        return convert(args)
    regions = RegionSet(args.regions, args.origin_radius)
    output = args.output or Path(args.corpus) / "Labels" / f"processed_labels_{args.regions}.csv"
    check_table_path(output)
    table = prepare_labels(corpus_from(args), regions, keep_other=args.keep_other, progress=not args.quiet)
    write_table(table, output)
    print(f"wrote {len(table)} rows to {output}")
    print(f"utterances per region ({regions.name}, {regions.num_classes} classes) and split:")
    print(counts(table, regions).to_string())
    return 0


def convert(args: argparse.Namespace) -> int:
    """``prepare --format``: a corpus's label layout to a manifest."""
    from .corpora import convert as convert_corpus
    from .errors import UserError
    from .io import check_table_path
    from .manifest import write_manifest
    from .problems import summarise_problems
    from .sphere import Scale

    if args.output is None:
        raise UserError(f"prepare --format {args.format}: give the manifest to write with --output")
    check_table_path(args.output)
    try:
        scale = Scale(*args.scale) if args.scale else None
    except ValueError as error:
        raise UserError(f"--scale: {error}") from None
    conversion = convert_corpus(
        args.format, args.corpus, fold=args.fold, keep_other=args.keep_other, labels=args.labels,
        audio_dir=args.audio_dir, scale=scale,
    )  # fmt: skip
    for line in summarise_problems(conversion.problems):
        log.warning("%s", line)
    conversion.raise_for_errors()
    write_manifest(conversion.manifest, args.output)
    print(f"wrote {len(conversion.manifest)} utterances to {args.output}")
    print(conversion.summary())
    return 0


def check(args: argparse.Namespace) -> int:
    from .check import check_corpus, log_problems
    from .config import ConfigError, load_config
    from .io import check_table_path, write_table
    from .preflight import preflight
    from .sphere import RegionSet

    if args.problems:
        check_table_path(args.problems)
    if args.corpus is not None and args.overrides:
        raise ConfigError(f"KEY=VALUE overrides ({' '.join(args.overrides)}) go with --config, not --corpus")
    if args.config is not None:
        config = load_config(args.config, args.overrides)
        report = preflight(config, resume=args.resume, decode=args.decode, progress=not args.quiet)
    else:
        report = check_corpus(
            corpus_from(args), RegionSet(args.regions, args.origin_radius),
            splits=None if args.splits == ["all"] else args.splits, keep_other=args.keep_other, decode=args.decode,
            workers=args.workers, progress=not args.quiet,
        )  # fmt: skip
        log_problems(report)
    print(report.summary())
    if args.problems:
        write_table(report.problems, args.problems)
        print(f"wrote {len(report.problems)} problem(s) to {args.problems}")
    report.raise_for_errors()
    return 0


def demo_corpus(args: argparse.Namespace) -> int:
    from .demo import make_demo_corpus
    from .errors import UserError

    if args.legacy_output is not None:
        log.warning("the output folder as a positional argument is deprecated; use --output %s", args.legacy_output)
    output = args.output or args.legacy_output
    if output is None:
        raise UserError("demo-corpus: give the output folder, e.g. --output data/demo_corpus")
    root = make_demo_corpus(
        output, n_train=args.n_train, n_dev=args.n_dev, n_test=args.n_test, seed=args.seed,
        workers=args.workers, progress=not args.quiet,
    )  # fmt: skip
    print(f"demo corpus written to {root}")
    return 0
