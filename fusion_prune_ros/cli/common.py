"""What every area of the command line shares: registering a subcommand with its handler, the data set flags, and
where reports go (under runs/ unless a path is given, so no command overwrites the committed docs by default)."""
from __future__ import annotations

from pathlib import Path

from ..errors import UserError


def command(sub, name: str, handler, help: str, description: str | None = None, flush_denormals: bool = False):
    """Add subcommand `name` run by `handler(args)`. `flush_denormals`: the command trains or takes gradients on
    the CPU, so subnormal floats are flushed before any thread pool starts (train.flush_denormals)."""
    parser = sub.add_parser(name, help=help, description=description or help)
    parser.set_defaults(func=handler, flush_denormals=flush_denormals)
    return parser


def add_quiet(parser) -> None:
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def add_data_flags(parser, default: str) -> None:
    """--dataroot and --version of the nuScenes-format data set to read; `default` says what applies without them."""
    parser.add_argument("--dataroot", help=f"data root of a nuScenes-format set (default: {default})")
    parser.add_argument("--version", help="its version: v1.0-mini, v1.0-trainval or v1.0-test "
                                          f"(default: {default})")


def data_override(args):
    """The --dataroot / --version given, as the prune framework's DataOverride (unset ones keep the checkpoint's)."""
    from ..prune.variant import DataOverride

    return DataOverride(args.dataroot, args.version)


def existing(path: str, what: str) -> Path:
    """`path` as a Path, or a UserError naming `what` is missing."""
    if not Path(path).exists():
        raise UserError(f"{what} not found: {path}")
    return Path(path)


def add_report_flags(parser, out: str, report: str) -> None:
    """--out (what the run measures, and the report unless --report) and --report (a Markdown path of one's own,
    e.g. docs/<report> to refresh the committed copy)."""
    parser.add_argument("--out", default=out, help=f"output folder (default {out}); the report is <out>/{report}")
    parser.add_argument("--report", metavar="FILE", help=f"write the Markdown report here instead (e.g. docs/{report} "
                        "to refresh the committed one)")


def report_path(args, name: str) -> Path:
    """Where the report goes: --report, else <--out>/<name>; its folder is created."""
    path = Path(args.report) if args.report else Path(args.out) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def write_report(path: Path, lines: list) -> None:
    """Write Markdown `lines` to `path` and print them."""
    text = "\n".join(lines) + "\n"
    path.write_text(text)
    print(text, end="")
    print(f"report written: {path}")
