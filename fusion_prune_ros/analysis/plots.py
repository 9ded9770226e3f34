"""The sweep's plots: what a reader would rather see than read in the results table.

- `pareto_plot`: NDS against measured latency (relative to dense), one line per method (the Pareto view the profile is chosen from);
- `per_layer_plot`: each method's realised sparsity per prunable layer at one level, coloured by module, so the
  methods' allocations (MMPrune4U's and DM3D's layer-adaptive ratios, where AlterMOMA cuts the LiDAR branch,
  magnitude leaving it whole) can be compared at a glance;
- `latency_table_plot`: each prunable conv's measured time against its pruned fraction, beside FLOPs.
"""
from __future__ import annotations

from pathlib import Path

from ..prune.units import modality_of

MODULE_COLOURS = {"lidar": "tab:blue", "camera": "tab:orange", "fusion": "tab:green", "head": "tab:purple"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def pareto_plot(table: list, path: Path, granularity: str = "channel") -> None:
    """NDS vs measured ONNX Runtime CPU latency relative to dense, one line per method (the dense model as a star
    at 1). Relative, not milliseconds: each is a ratio against the dense graph timed beside the variant, so rows
    timed on different machines (carried rows, sweep.carried_rows) share the axis."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=110)
    dense = next(r for r in table if r["method"] == "dense")
    methods = sorted({r["method"] for r in table if r["granularity"] == granularity})
    for method in methods:
        pts = sorted((1.0 / r["ort_speedup"], r["NDS"]) for r in table if r["method"] == method
                     and r["granularity"] == granularity and r["seed"] == 0)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=method, ms=4)
    ax.plot(1.0, dense["NDS"], "k*", ms=12, label="dense")
    ax.set_xlabel("latency relative to dense (ONNX Runtime CPU, 2 threads, fused graph, timed side by side)")
    ax.set_ylabel("NDS (generated val split)")
    ax.set_title(f"{granularity} pruning: accuracy vs measured latency")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def per_layer_plot(manifests: list, path: Path, level: float, granularity: str = "channel") -> bool:
    """One panel per method (seed 0): realised sparsity of every prunable layer at `level`, bars coloured by
    module. Returns False (and writes nothing) when no variant is at that level."""
    chosen = sorted((m for m in manifests if m.granularity == granularity and m.seed == 0
                     and abs(m.sparsity - level) < 1e-9), key=lambda m: m.method)
    if not chosen:
        return False
    plt = _pyplot()
    layers = list(chosen[0].sparsity_realised["per_layer"])
    fig, axes = plt.subplots(len(chosen), 1, figsize=(11, 1.6 * len(chosen) + 1.6), dpi=100, sharex=True,
                             squeeze=False)
    for ax, m in zip(axes[:, 0], chosen):
        ratios = m.sparsity_realised["per_layer"]
        ax.bar(range(len(layers)), [ratios.get(name, 0.0) for name in layers],
               color=[MODULE_COLOURS[modality_of(name)] for name in layers])
        per = m.sparsity_realised["per_modality"]
        ax.set_ylim(0, 1)
        ax.set_ylabel("pruned", fontsize=8)
        ax.set_title(f"{m.method}: camera {per.get('camera', 0):.0%}, LiDAR {per.get('lidar', 0):.0%}, "
                     f"fusion + BEV {per.get('fusion', 0):.0%}, head {per.get('head', 0):.0%}", fontsize=9, loc="left")
        ax.grid(axis="y", alpha=0.3)
    axes[-1, 0].set_xticks(range(len(layers)), layers, rotation=90, fontsize=6)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in MODULE_COLOURS.values()]
    fig.legend(handles, list(MODULE_COLOURS), loc="upper right", ncol=4, fontsize=8)
    fig.suptitle(f"Realised sparsity per layer, {granularity} pruning at {level:.0%} of prunable parameters",
                 x=0.01, ha="left", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(path)
    plt.close(fig)
    return True


def latency_table_plot(table, modality: dict, path: Path) -> None:
    """Share of each unit's time kept vs pruned fraction, one line per unit coloured by module, beside the share of
    FLOPs kept (dashed): where the lines sit above the dashed one, FLOPs promise more speed than the CPU gives."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
    phis = list(table.phis)
    ax.plot(phis, [1 - p for p in phis], "k--", lw=1.5, label="FLOPs kept (1 - phi)")
    for name, ms in table.ms.items():
        ax.plot(phis, ms / ms[0], color=MODULE_COLOURS[modality[name]], alpha=0.6, lw=1)
    for module, colour in MODULE_COLOURS.items():
        if module in modality.values():
            ax.plot([], [], color=colour, label=f"{module} conv: time kept")
    ax.set_xlabel("pruned fraction of the unit's output channels (phi)")
    ax.set_ylabel("kept (of the unit at full width)")
    ax.set_ylim(0, 1.15)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("Each prunable conv timed alone (ONNX Runtime CPU, 2 threads)", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
