"""The ``emosphere`` command. Each group of commands owns its arguments and work:

* :mod:`emosphere.cli_data`: ``prepare``, ``check``, ``demo-corpus``;
* :mod:`emosphere.cli_runs`: ``train``, ``evaluate``, ``report``, ``ablate``;
* :mod:`emosphere.cli_models`: ``predict``, ``export``, ``serve``, ``import-original``;

and :mod:`emosphere.cli_options` holds what they share (one option name per concept).

Exit codes: 0 done; 1 some files of a batch job failed (listed in its errors
file); 2 a mistake in what the user gave (options, config, paths, data): one
line on stderr, no traceback, and checked before anything is written. Any
other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys

from . import __version__, cli_data, cli_models, cli_runs
from .cli_options import Parser, log
from .threads import wait_passively

COMMAND_GROUPS = (cli_data, cli_runs, cli_models)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="emosphere",
        description="EmoSphere-SER: arousal, valence and dominance (1-7 scale) from speech, with an auxiliary "
        "classifier of the emotion's region on a sphere.",
    )
    parser.add_argument("--version", action="version", version=f"emosphere {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in COMMAND_GROUPS:
        group.register(commands)
    return parser


def _log_to_stderr(verbose: bool) -> None:
    for old in list(log.handlers):
        log.removeHandler(old)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.DEBUG if verbose else logging.INFO)
    log.propagate = False


def main(argv: list[str] | None = None) -> int:
    wait_passively()  # before a command imports torch (emosphere.threads)
    parser = build_parser()
    _log_to_stderr("-v" in (argv or sys.argv) or "--verbose" in (argv or sys.argv))  # before a deprecation warns
    args, extra = parser.parse_known_args(argv)
    # argparse stops collecting KEY=VALUE overrides at the first option; take the rest too.
    overrides = getattr(args, "overrides", None)
    if extra and overrides is not None and all("=" in e and not e.startswith("-") for e in extra):
        args.overrides += extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
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
