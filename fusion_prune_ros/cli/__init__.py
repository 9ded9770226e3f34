"""`fusion-prune <command>`: the package's one command line.

One module per area (data, detector, prune, analysis, onboard); each subcommand's parser is defined beside its
handler. Handlers import their stage lazily, so `fusion-prune --help` and light commands do not pay for torch. A
`UserError` anywhere becomes one line on stderr and exit status 2; anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
import signal
import sys

from ..errors import UserError
from . import analysis, data, detector, onboard, prune

AREAS = (data, detector, prune, analysis, onboard)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fusion-prune", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for area in AREAS:
        for add in area.COMMANDS:
            add(sub)
    return parser


def main(argv=None) -> int:
    # SIGTERM (a stopped job, `kill`) unwinds like Ctrl-C, so every stage removes its half-written output.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    args = build_parser().parse_args(argv)
    if args.flush_denormals:
        # Before any parallel region: the flag is per thread, and OpenMP workers inherit it only when created after.
        from ..training.fit import flush_denormals

        flush_denormals()
    try:
        args.func(args)
    except UserError as e:
        print(f"fusion-prune {args.command}: error: {e}", file=sys.stderr)
        return 2
    return 0
