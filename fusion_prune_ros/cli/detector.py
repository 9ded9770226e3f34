"""Detector commands: `train`, `eval` (the official nuScenes metric) and `export` (ONNX graphs + a profile)."""
from __future__ import annotations

from pathlib import Path

from ..errors import UserError
from ..runtime.latency_key import ORT_CPU_2T
from .common import add_data_flags, add_quiet, command, existing

CONDITIONS = ("fused", "camera_lost", "lidar_lost")


def _override_data(cfg, args):
    if args.dataroot:
        cfg.data.dataroot = args.dataroot
    if args.version:
        cfg.data.version = args.version
    return cfg


def _train(args) -> None:
    from ..config import DetectorConfig, load_yaml
    from ..training.detector import train_detector

    cfg = _override_data(load_yaml(DetectorConfig, args.config), args)
    if args.steps:
        cfg.train.steps = args.steps
    train_detector(cfg, Path(args.out), device=args.device, quiet=args.quiet, evaluate=not args.no_eval)


def add_train(sub) -> None:
    p = command(sub, "train", _train, "train the fusion detector (resumes from --out/last.pt)",
                "Train the detector of a config YAML, then score it on the validation split (fused, camera lost, "
                "LiDAR lost). Run under torchrun for DistributedDataParallel.", flush_denormals=True)
    p.add_argument("--config", required=True, help="detector YAML (config/detector/base.yaml)")
    p.add_argument("--out", required=True, help="run folder: last.pt, model.pt, metrics.json, train_log.jsonl")
    add_data_flags(p, "the config's data section")
    p.add_argument("--steps", type=int, help="override the config's optimiser steps")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--no-eval", action="store_true", help="skip the evaluation at the end")
    add_quiet(p)


def _eval_checkpoint(args) -> None:
    from ..data.dataset import build_cache
    from ..data.nusc import open_nuscenes
    from ..evaluation.metrics import format_metrics
    from ..model.checkpoint import load_detector
    from ..model.inference import evaluate_conditions, torch_runner

    model, cfg, _ = load_detector(existing(args.checkpoint, "checkpoint"))
    _override_data(cfg, args)
    split = args.split or cfg.data.val_split
    nusc = open_nuscenes(cfg.data.dataroot, cfg.data.version)
    cache = build_cache(cfg, split, quiet=args.quiet)
    results = evaluate_conditions(torch_runner(model), cache, cfg, nusc, split, args.out,
                                  conditions=args.conditions or CONDITIONS, quiet=args.quiet)
    for name, summary in results.items():
        print(f"== {name}\n{format_metrics(summary)}")


def _eval(args) -> None:
    if args.checkpoint:
        return _eval_checkpoint(args)
    from ..data.nusc import check_split, open_nuscenes
    from ..evaluation.metrics import evaluate_predictions, evaluate_results, format_metrics, ground_truth_predictions

    if not args.dataroot:
        raise UserError("give --dataroot (and --results or --ground-truth), or --checkpoint")
    version = args.version or "v1.0-mini"
    split = args.split or "mini_val"
    check_split(version, split)
    nusc = open_nuscenes(args.dataroot, version)
    out = Path(args.out)
    if args.ground_truth:
        summary = evaluate_predictions(nusc, ground_truth_predictions(nusc, split), split, out)
    elif args.results:
        summary = evaluate_results(nusc, args.results, split, out)
    else:
        raise UserError("give --results FILE (a nuScenes detection results JSON) or --ground-truth")
    print(format_metrics(summary))
    print(f"metrics written to {out / 'metrics_summary.json'}")


def add_eval(sub) -> None:
    p = command(sub, "eval", _eval, "score predictions with the official nuScenes detection metric",
                "Score a detector checkpoint (under each modality condition), a nuScenes detection results JSON, or "
                "the ground truth itself (a sanity check) with the devkit's DetectionEval (detection_cvpr_2019).")
    p.add_argument("--checkpoint", help="detector checkpoint (model.pt): run it on the split's frames")
    p.add_argument("--conditions", nargs="+", choices=CONDITIONS)
    add_data_flags(p, "the checkpoint's; v1.0-mini for --results and --ground-truth")
    p.add_argument("--split", help="default: mini_val, or the checkpoint's validation split")
    p.add_argument("--results", help="nuScenes detection results JSON")
    p.add_argument("--ground-truth", action="store_true", help="score the ground truth as predictions")
    p.add_argument("--out", default="runs/eval", help="folder for metrics_summary.json")
    add_quiet(p)


def _export(args) -> None:
    from ..export.ship import ship

    meta = ship(existing(args.checkpoint, "checkpoint"), args.out, args.name, args.profile,
                iterations=args.iterations)
    for mode, g in meta["graphs"].items():
        lat = g[str(ORT_CPU_2T)]
        print(f"{mode:>7}: {Path(args.out) / g['file']} ({g['bytes'] / 1e6:.1f} MB), max |ORT - torch| "
              f"{g['max_abs_diff_vs_torch']:.1e}, ONNX Runtime CPU 2 threads median {lat['median_ms']:.1f} ms "
              f"(p95 {lat['p95_ms']:.1f})")
    weights = meta["weights"]
    print(f"weights: {Path(args.out) / weights['file']} ({weights['bytes'] / 1e6:.1f} MB), shared by the graphs")
    if args.profile:
        print(f"profile written: {args.profile}")


def add_export(sub) -> None:
    p = command(sub, "export", _export, "export a checkpoint to a deployable model folder (+ a profile)",
                "Write the fused, LiDAR-only and camera-only ONNX graphs (opset 18, static shapes), check ONNX "
                "Runtime against PyTorch (< 1e-3), measure ONNX Runtime CPU latency, write metadata.json, and "
                "optionally a profile listing the graphs.")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--out", required=True, help="model folder (models/base)")
    p.add_argument("--name", default="dense", help="variant name prefix")
    p.add_argument("--profile", help="write a profile YAML for the node (config/profiles/dense.yaml)")
    p.add_argument("--iterations", type=int, default=20, help="timed runs per graph")


COMMANDS = (add_train, add_eval, add_export)
