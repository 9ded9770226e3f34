"""Analysis commands (fusion_prune_ros/analysis): `latency-table`, `allocation-ablation`, `curve-shapes`,
`altermoma-b-sweep`, `variant-latency`. Each writes under runs/ unless given a path; the text is the analysis
modules' own."""
from __future__ import annotations

from pathlib import Path

from .common import (add_data_flags, add_quiet, add_report_flags, command, data_override, existing, report_path,
                     write_report)

CONDITIONS = ("fused", "camera_lost", "lidar_lost")
TRAINED_ON = "the data set the dense model was trained on"


def _latency_table(args) -> None:
    from ..analysis.latency_report import latency_report, measure
    from ..analysis.plots import latency_table_plot

    result = measure(existing(args.dense, "dense checkpoint"), round_to=args.round_to, iterations=args.iterations)
    report = report_path(args, "latency_table.md")
    plot = report.with_suffix(".png")
    latency_table_plot(result["table"], result["modality"], plot)
    write_report(report, latency_report(result, args.dense, plot.name))


def add_latency_table(sub) -> None:
    p = command(sub, "latency-table", _latency_table, "time every prunable conv alone at pruned widths (the latency "
                "cost DM3D's allocator can spend instead of FLOPs)",
                "Writes the Markdown table and, beside it, a plot of time kept against pruned fraction.")
    p.add_argument("--dense", required=True)
    p.add_argument("--round-to", type=int, default=8, help="widths in multiples of this (the sweep's round_to)")
    p.add_argument("--iterations", type=int, default=40)
    add_report_flags(p, "runs/latency_table", "latency_table.md")


def _allocation_ablation(args) -> None:
    from ..analysis.allocation_ablation import AllocationAblationConfig, ablation_report, run_allocation_ablation

    cfg = AllocationAblationConfig(sparsities=tuple(args.sparsities), conditions=tuple(args.conditions),
                                   scale=args.scale)
    result = run_allocation_ablation(existing(args.dense, "dense checkpoint"), args.out, cfg, quiet=args.quiet,
                                     data=data_override(args))
    write_report(report_path(args, "dm3d_allocation.md"), ablation_report(result))


def add_allocation_ablation(sub) -> None:
    p = command(sub, "allocation-ablation", _allocation_ablation, "DM3D's DP allocation vs uniform at equal FLOPs "
                "(no fine-tuning)", flush_denormals=True)
    p.add_argument("--dense", required=True)
    p.add_argument("--sparsities", type=float, nargs="+", default=[0.5, 0.8])
    p.add_argument("--conditions", nargs="+", default=["fused"], choices=CONDITIONS)
    p.add_argument("--scale", default="forward", choices=("forward", "hessian"),
                   help="DM3D's curves on the forward-measured scale (the scorer's default) or raw")
    add_data_flags(p, TRAINED_ON)
    add_report_flags(p, "runs/allocation_ablation", "dm3d_allocation.md")
    add_quiet(p)


def _curve_shapes(args) -> None:
    from ..analysis.curve_shapes import CurveShapesConfig, curve_shapes_report, run_curve_shapes

    result = run_curve_shapes(existing(args.dense, "dense checkpoint"), CurveShapesConfig(batches=args.batches),
                              tuple(args.variants), quiet=args.quiet, data=data_override(args))
    write_report(report_path(args, "curve_shapes.md"), curve_shapes_report(result, args.dense, tuple(args.variants)))


def add_curve_shapes(sub) -> None:
    p = command(sub, "curve-shapes", _curve_shapes, "each unit's distortion curve with its weakest weights vs its "
                "weakest whole channels removed (what the layer-adaptive allocators price vs what channel pruning "
                "does)")
    p.add_argument("--dense", required=True)
    p.add_argument("--batches", type=int, default=2, help="calibration batches of 8 frames (MMPrune4U uses 2)")
    p.add_argument("--variants", nargs="*", default=[], metavar="DIR",
                   help="channel-pruned variant folders: their allocations' summed vs joint distortion")
    add_data_flags(p, TRAINED_ON)
    add_report_flags(p, "runs/curve_shapes", "curve_shapes.md")
    add_quiet(p)


def _altermoma_b_sweep(args) -> None:
    from ..analysis.altermoma_b_sweep import BSweepConfig, b_sweep_report, run_b_sweep

    cfg = BSweepConfig(steps=tuple(args.steps), sparsity=args.sparsity)
    result = run_b_sweep(existing(args.dense, "dense checkpoint"), cfg, quiet=args.quiet, data=data_override(args))
    write_report(report_path(args, "altermoma_b_sweep.md"), b_sweep_report(result, args.dense))


def add_altermoma_b_sweep(sub) -> None:
    p = command(sub, "altermoma-b-sweep", _altermoma_b_sweep, "AlterMOMA's scores for several numbers of "
                "reactivation steps B (one reactivation run per masked modality; no pruning, no fine-tuning)")
    p.add_argument("--dense", required=True)
    p.add_argument("--steps", type=int, nargs="+", default=[0, 25, 50, 100, 200])
    p.add_argument("--sparsity", type=float, default=0.8, help="global threshold of the 'removed' columns")
    add_data_flags(p, TRAINED_ON)
    add_report_flags(p, "runs/altermoma_b_sweep", "altermoma_b_sweep.md")
    add_quiet(p)


def _variant_latency(args) -> None:
    from ..analysis.variant_latency import GPU_LATENCY, format_variant_latency, time_variants, write_latency

    result = time_variants(Path(args.dense), Path(args.variants), args.backend, args.device, args.iterations,
                           fp16=None if args.precision == "auto" else args.precision == "fp16")
    out = Path(args.out) if args.out else Path(args.variants) / GPU_LATENCY
    write_latency(result, out)
    print("\n".join(format_variant_latency(result, out)))


def add_variant_latency(sub) -> None:
    p = command(sub, "variant-latency", _variant_latency, "time the dense model and every sweep variant side by "
                "side on one backend (e.g. PyTorch CUDA on an NVIDIA H200)",
                "Writes <variants>/latency_gpu.json (or --out), which the sweep report shows as the gpu_ms / "
                "gpu_speedup columns.")
    p.add_argument("--dense", default="models/base", help="the dense model folder (detector.yaml, graphs, model.pt)")
    p.add_argument("--variants", default="runs/variants")
    p.add_argument("--backend", default="torch", choices=("torch", "onnxruntime", "tensorrt"))
    p.add_argument("--device", default="cuda")
    p.add_argument("--precision", default="auto", choices=("auto", "fp16", "fp32"),
                   help="torch backend: auto = fp16 with a CUDA graph on a GPU, fp32 on the CPU")
    p.add_argument("--iterations", type=int, default=100)
    p.add_argument("--out", help="JSON path (default <variants>/latency_gpu.json)")


COMMANDS = (add_latency_table, add_allocation_ablation, add_curve_shapes, add_altermoma_b_sweep, add_variant_latency)
