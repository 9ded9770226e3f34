"""The sweep's report: the results table (CSV and Markdown), the targets checked against it, the cost, and the plots.

The sweep (prune/sweep.py) builds variants and returns their rows; everything a reader sees is written here, into
a report folder of the caller's choice (the committed docs/ only when asked for).
"""
from __future__ import annotations

import csv
from pathlib import Path

from ..export.manifest import read_manifests
from ..prune.retime import channel_floor
from ..prune.sweep import COLUMNS, SweepResults, read_log, results
from .findings import cost, findings
from .method_claims import method_claims, read_ablation
from .plots import pareto_plot, per_layer_plot
from .variant_latency import GPU_LATENCY, current, read_latency

RESULTS = "pruning_results"  # <report folder>/pruning_results.{csv,md}


def write_table(table: list, csv_path: Path, md_path: Path, title: str, notes: list = ()) -> None:
    """The CSV (one column per ResultRow key, the format sweep.read_rows reads back), and the Markdown table
    followed by `notes` (Markdown lines)."""
    with open(csv_path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(table)
    lines = [f"# {title}", "", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in table:
        lines.append("| " + " | ".join(_fmt(r[c]) for c in COLUMNS) + " |")
    md_path.write_text("\n".join([*lines, "", *notes]) + "\n")


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def sweep_results(out_root: Path, dense_dir: Path, carried: list = (), earlier: dict | None = None) -> SweepResults:
    """The sweep folder's rows with the GPU columns of its variant-latency file (models redone since it was
    timed left blank)."""
    gpu = current(read_latency(Path(out_root) / GPU_LATENCY), read_manifests(out_root))
    return results(out_root, dense_dir, carried, earlier, gpu)


def carried_note(res: SweepResults, carry: str | Path) -> list:
    """Markdown lines saying which rows came from an earlier report and how their numbers compare."""
    if not res.carried:
        return []
    names = ", ".join(r["name"] for r in res.carried)
    built = len(res.manifests)
    return [f"{len(res.carried)} of these rows were carried from an earlier report ({carry}; built in an earlier "
            f"run of this sweep whose folders are not here; speed-ups against that run's dense timing, "
            f"{res.table[0]['ort_ms']:.2f} ms, the dense row's): {names}. The {built} rows built here were timed "
            f"beside dense at {res.dense_ms:.2f} ms on this machine: compare speed-ups, not milliseconds, across the "
            f"two groups. AlterMOMA's reactivation statistics below come from manifests: they cover the {built} "
            f"variants built here.", ""]


def write_sweep_report(res: SweepResults, out_root: Path, report_dir: Path, planned: list,
                       carry: str | Path | None = None) -> Path:
    """pruning_results.{csv,md} (table, targets, cost), pareto_<granularity>.png and per_layer_channel_<level>.png
    in `report_dir`; returns the Markdown file's path. `planned`: the plan's variant names (for the cost)."""
    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    table, manifests = res.table, res.manifests
    gpu = current(read_latency(Path(out_root) / GPU_LATENCY), manifests)
    md = report_dir / f"{RESULTS}.md"
    write_table(table, report_dir / f"{RESULTS}.csv", md, f"Pruning results ({len(table) - 1} variants, measured)",
                carried_note(res, carry) + findings(table, manifests, channel_floor(out_root), gpu)
                + method_claims([r for r in table if r["granularity"] == "channel"], read_ablation(out_root))
                + cost(table, read_log(out_root), planned))
    for granularity in sorted({r["granularity"] for r in table if r["method"] != "dense"}):  # carried rows too
        pareto_plot(table, report_dir / f"pareto_{granularity}.png", granularity)
    for level in (0.8, 0.9):
        per_layer_plot(manifests, report_dir / f"per_layer_channel_{round(level * 100)}.png", level)
    return md
