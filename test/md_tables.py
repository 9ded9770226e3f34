"""Markdown tables read back for structural checks: the columns, one row per item, cells that parse as numbers."""


def tables(text: str) -> list:
    """Every pipe table in `text`: {"columns": [...], "rows": [[cell, ...], ...]}, cells stripped."""
    found, lines = [], text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("|") and i + 1 < len(lines) and set(lines[i + 1].replace("|", "")) <= {"-", " "} \
                and lines[i + 1].startswith("|---"):
            columns = _cells(lines[i])
            rows, i = [], i + 2
            while i < len(lines) and lines[i].startswith("|"):
                rows.append(_cells(lines[i]))
                i += 1
            found.append({"columns": columns, "rows": rows})
        else:
            i += 1
    return found


def table_with(text: str, *columns: str) -> dict:
    """The first table having all of `columns`; its rows as dicts (a repeated column name keeps its first cell)."""
    for t in tables(text):
        if all(c in t["columns"] for c in columns):
            rows = [{c: cells[k] for k, c in reversed(list(enumerate(t["columns"])))} for cells in t["rows"]]
            return {"columns": t["columns"], "rows": rows, "cells": t["rows"]}
    raise AssertionError(f"no table with columns {columns}")


def number(cell: str) -> float:
    """A cell as a float: '+0.0250', '95.0%' (-> 95.0), '3.00x'."""
    return float(cell.strip().rstrip("%x"))


def _cells(line: str) -> list:
    return [c.strip() for c in line.strip().strip("|").split("|")]
