"""Reading a document the user pointed at (a profile, a manifest, a results file): a missing file or one that does
not parse is a one-line UserError naming it, never a traceback from the parser."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from .errors import UserError


def read_document(path: Path, parse: Callable[[str], Any], parse_error: type[Exception] | tuple, missing: str,
                  invalid: str) -> Any:
    """parse(text of `path`); `missing` is the message when there is no such file, `invalid` the start of the
    message when `parse` raises `parse_error` (the parser's first line follows it)."""
    if not path.is_file():
        raise UserError(missing)
    try:
        return parse(path.read_text())
    except parse_error as e:
        raise UserError(f"{invalid}: {str(e).splitlines()[0]}") from None
