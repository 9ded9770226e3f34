"""`fusion-prune <command>`: the package's one command line.

Handlers import their stage lazily, so `fusion-prune --help` and light commands do not pay for torch. A
`UserError` anywhere becomes one line on stderr and exit status 2; anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from ..errors import UserError


def _synth(args) -> None:
    from ..config import load_yaml
    from ..data.synth.generate import SynthConfig, generate

    cfg = load_yaml(SynthConfig, args.config) if args.config else SynthConfig()
    for key in ("version", "train_scenes", "val_scenes", "scene_seconds", "seed", "lidar_azimuth_steps", "workers"):
        value = getattr(args, key)
        if value is not None:
            setattr(cfg, key, value)
    if args.image_size:
        try:
            cfg.image_width, cfg.image_height = (int(v) for v in args.image_size.lower().split("x"))
        except ValueError:
            raise UserError(f"--image-size must look like 400x225, got {args.image_size!r}") from None
    if args.no_camera_sweeps:
        cfg.camera_sweeps = False
    summary = generate(cfg, args.out, quiet=args.quiet)
    per_scene = summary["seconds"] / len(summary["scenes"])
    print(f"wrote {args.out}: {len(summary['scenes'])} scenes, {summary['samples']} samples, "
          f"{summary['sample_data']} sensor files, {summary['annotations']} annotations, "
          f"{summary['bytes'] / 1e6:.0f} MB in {summary['seconds']:.0f} s ({per_scene:.1f} s per scene)")


def _to_bag(args) -> None:
    from ..bag.to_bag import convert
    from ..data.nusc import open_nuscenes, split_scene_names

    nusc = open_nuscenes(args.dataroot, args.version)
    if args.split:
        names = [s["name"] for s in nusc.scene if s["name"] in split_scene_names(args.split)]
        if not names:
            raise UserError(f"no scene of split {args.split} in {args.dataroot}")
        out = Path(args.out)
        if out.exists():
            raise UserError(f"output directory already exists: {out}")
        for name in names:
            summary = convert(nusc, [name], out / name, storage=args.storage, progress=not args.quiet)
            print(f"wrote {out / name}: {summary}")
    else:
        summary = convert(nusc, args.scene, Path(args.out), storage=args.storage, progress=not args.quiet)
        print(f"wrote {args.out}: {summary}")


def _detector_config(args):
    from ..config import DetectorConfig, load_yaml

    cfg = load_yaml(DetectorConfig, args.config)
    if getattr(args, "dataroot", None):
        cfg.data.dataroot = args.dataroot
    return cfg


def _train(args) -> None:
    from ..train_detector import train_detector

    cfg = _detector_config(args)
    if args.steps:
        cfg.train.steps = args.steps
    train_detector(cfg, Path(args.out), device=args.device, quiet=args.quiet, evaluate=not args.no_eval)


def _export(args) -> None:
    from ..export.ship import ship

    meta = ship(args.checkpoint, args.out, args.name, args.profile, iterations=args.iterations)
    for mode, g in meta["graphs"].items():
        lat = g["ort-cpu-2t"]
        print(f"{mode:>7}: {Path(args.out) / g['file']} ({g['bytes'] / 1e6:.1f} MB), max |ORT - torch| "
              f"{g['max_abs_diff_vs_torch']:.1e}, ONNX Runtime CPU 2 threads median {lat['median_ms']:.1f} ms "
              f"(p95 {lat['p95_ms']:.1f})")
    if args.profile:
        print(f"profile written: {args.profile}")


def _replay(args) -> None:
    from ..bag.replay import replay, score, summary_table, timeline_plot, write_results
    from ..bag.scenario import load_scenario
    from ..runtime.core import CoreConfig
    from ..runtime.policy import PolicyConfig

    scenario = load_scenario(args.scenario)
    cfg = CoreConfig(profile=args.profile, backend=args.backend, device=args.device,
                     score_threshold=args.score_threshold, policy=PolicyConfig(latency_budget_ms=args.budget_ms))
    out = Path(args.out)
    if out.exists():
        raise UserError(f"output folder already exists: {out}")
    core, record = replay(args.bag, cfg, out, scenario, no_drop=args.no_drop, quiet=args.quiet, loops=args.loops)
    metrics = None
    if args.dataroot:
        metrics = score(record, scenario, args.dataroot, args.version, args.split, out)
    results = write_results(core, record, metrics, out)
    timeline_plot(record, core, out / "timeline.png", f"{Path(args.bag).name}, scenario {scenario.name}")
    print(summary_table(results, f"replay of {args.bag}, scenario {scenario.name}"))


def _eval_checkpoint(args) -> None:
    from ..data.dataset import build_cache
    from ..data.nusc import open_nuscenes
    from ..evaluate import format_metrics
    from ..model.checkpoint import load_detector
    from ..model.inference import CONDITIONS, evaluate_conditions, torch_runner

    model, cfg, _ = load_detector(args.checkpoint)
    if args.dataroot:
        cfg.data.dataroot = args.dataroot
        cfg.data.version = args.version
    split = args.split or cfg.data.val_split
    nusc = open_nuscenes(cfg.data.dataroot, cfg.data.version)
    cache = build_cache(cfg, split, quiet=args.quiet)
    results = evaluate_conditions(torch_runner(model), cache, cfg, nusc, split, args.out,
                                  conditions=args.conditions or tuple(CONDITIONS), quiet=args.quiet)
    for name, summary in results.items():
        print(f"== {name}\n{format_metrics(summary)}")


def _eval(args) -> None:
    from ..data.nusc import check_split, open_nuscenes
    from ..evaluate import evaluate_predictions, evaluate_results, format_metrics, ground_truth_predictions

    if args.checkpoint:
        return _eval_checkpoint(args)
    if not args.dataroot:
        raise UserError("give --dataroot (and --results or --ground-truth), or --checkpoint")
    args.split = args.split or "mini_val"
    check_split(args.version, args.split)
    nusc = open_nuscenes(args.dataroot, args.version)
    out = Path(args.out)
    if args.ground_truth:
        summary = evaluate_predictions(nusc, ground_truth_predictions(nusc, args.split), args.split, out)
    elif args.results:
        summary = evaluate_results(nusc, args.results, args.split, out)
    else:
        raise UserError("give --results FILE (a nuScenes detection results JSON) or --ground-truth")
    print(format_metrics(summary))
    print(f"metrics written to {out / 'metrics_summary.json'}")


def _show(args) -> None:
    from ..data.frame import load_frame
    from ..data.nusc import open_nuscenes
    from ..evaluate import ground_truth
    from ..viz import bev_plot, camera_mosaic

    nusc = open_nuscenes(args.dataroot, args.version)
    scene = next((s for s in nusc.scene if s["name"] == args.scene), None)
    if scene is None:
        raise UserError(f"no scene {args.scene} in {args.dataroot}")
    token = scene["first_sample_token"]
    for _ in range(args.sample):
        token = nusc.get("sample", token)["next"] or token
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    frame = load_frame(nusc, token, n_sweeps=1)
    title = f"{scene['name']} ({scene['description']}), sample {args.sample}"
    camera_mosaic(frame.images, frame.camera_names, out / f"{scene['name']}_cameras.png", title)
    bev_plot(frame.points, out / f"{scene['name']}_bev.png", truth=ground_truth(nusc, token, min_points=1),
             title=f"{title}: LiDAR + boxes with points")
    print(f"wrote {out / (scene['name'] + '_cameras.png')} and {out / (scene['name'] + '_bev.png')}")


def _play(args) -> None:
    from ..ros.play import play

    counts = play(args.bag, rate=args.rate, clock=args.clock, topics=args.topics,
                  wait_for_subscribers_s=args.wait_for_subscribers)
    print("published: " + ", ".join(f"{t} {n}" for t, n in sorted(counts.items())))


def _record(args) -> None:
    from ..demo import LATCHED_OUTPUTS, OUTPUT_TOPICS
    from ..ros.record import record

    topics = dict(OUTPUT_TOPICS)
    for spec in args.topic or []:
        name, _, typename = spec.partition(":")
        if not typename:
            raise UserError(f"--topic needs NAME:TYPE (e.g. /LIDAR_TOP:sensor_msgs/msg/PointCloud2), got {spec!r}")
        topics[name] = typename
    counts = record(args.out, topics, args.duration, latched=LATCHED_OUTPUTS)
    print("recorded: " + ", ".join(f"{t} {n}" for t, n in sorted(counts.items())))


def _prune(args) -> None:
    from ..prune.variant import PruneSpec, load_prune_config, prune_variant

    spec = PruneSpec(args.method, args.sparsity, args.granularity, args.seed)
    m = prune_variant(args.dense, spec, load_prune_config(args.config), args.out, quiet=args.quiet)
    print(f"{m['name']}: realised sparsity {m['sparsity_realised']['overall']:.3f} "
          f"(camera {m['sparsity_realised']['per_modality'].get('camera', 0):.3f}, "
          f"LiDAR {m['sparsity_realised']['per_modality'].get('lidar', 0):.3f}), "
          f"{m['complexity']['params_m']:.3f} M params, {m['complexity']['fused']['gflops']:.2f} GFLOPs")
    for cond, v in m["metrics"].items():
        print(f"  {cond:<12} mAP {v['mAP']:.4f}  NDS {v['NDS']:.4f}")
    print(f"  ONNX Runtime CPU (2 threads) fused {m['latency_ms']['ort-cpu-2t']['fused']['median_ms']:.1f} ms")


def _sweep(args) -> None:
    from ..analysis.sweep_report import sweep_results, write_sweep_report
    from ..prune.sweep import carried_rows, collect, load_sweep_config, plan, read_rows, remeasure_latency, run_sweep
    from ..prune.ladder import write_profile

    cfg = load_sweep_config(args.config)
    specs = plan(cfg)
    out = Path(args.out)
    done = sum((out / s.name / "manifest.json").is_file() for s in specs)
    earlier = read_rows(args.carry) if args.carry else {}
    carried = carried_rows(earlier, [s.name for s in specs], {m["name"] for m in collect(out)})
    print(f"sweep plan: {len(specs)} variants ({done} done here, {len(carried)} carried), "
          f"{cfg.prune.finetune_steps} fine-tuning steps each")
    if carried and args.profile:
        raise UserError(f"--profile chooses among every channel variant's graphs, but {len(carried)} variants are "
                        f"carried from {args.carry} without their folders: rebuild the profile where they exist")
    if not args.report_only:
        run_sweep(args.dense, cfg, out, quiet=args.quiet, limit=args.limit,
                  skip=frozenset(r["name"] for r in carried))
    dense_dir = Path(args.dense).parent
    if args.remeasure:
        remeasure_latency(collect(out), dense_dir, out)
    res = sweep_results(out, dense_dir, carried, earlier)
    report = write_sweep_report(res, out, Path(args.docs), [s.name for s in specs], args.carry)
    if args.profile:
        write_profile(res.manifests, dense_dir, out, Path(args.profile), Path(args.ship) if args.ship else None,
                      args.max_nds_loss, args.min_step_gain)
        print(f"profile written: {args.profile}")
    print(f"results: {report}")


def _allocation_ablation(args) -> None:
    from ..analysis.allocation_ablation import AllocationAblationConfig, format_ablation, run_allocation_ablation

    cfg = AllocationAblationConfig(sparsities=tuple(args.sparsities), conditions=tuple(args.conditions),
                                   scale=args.scale)
    result = run_allocation_ablation(args.dense, args.out, cfg, quiet=args.quiet)
    lines = ["# DM3D: DP allocation vs uniform allocation at equal FLOPs (before fine-tuning)", "",
             "Generated by `fusion-prune allocation-ablation` (fusion_prune_ros/prune/allocation_ablation.py): the "
             "same within-unit ranking (|w g|, DM3D's objective) and calibration frames; uniform prunes every "
             "prunable conv by the target; the DP spends exactly the FLOPs uniform keeps. "
             + ("Curves: DM3D's Hessian curves on the forward-measured scale (the scorer's default). "
                if cfg.scale == "forward" else "Curves: DM3D's raw Hessian curves (`--scale hessian`). ")
             + "Official metrics on the generated val split, no fine-tuning. "
             f"Curves and gradients: {result['scoring_seconds']:.0f} s; whole run {result['seconds']:.0f} s.", "",
             *format_ablation(result)]
    Path(args.report).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def _curve_shapes(args) -> None:
    from ..analysis.curve_shapes import CurveShapesConfig, format_curve_shapes, run_curve_shapes

    result = run_curve_shapes(args.dense, CurveShapesConfig(batches=args.batches), tuple(args.variants),
                              quiet=args.quiet)
    lines = ["# Distortion curves: weakest weights vs weakest whole channels", "",
             "Generated by `fusion-prune curve-shapes` (fusion_prune_ros/prune/curve_shapes.py) on "
             f"`{args.dense}`: each prunable unit pruned alone, the output distortion of the head (sigmoid heatmaps "
             f"and regression maps, squared error per frame) on {result['frames']} calibration frames of the sweep's "
             "set. Weights: the fraction phi of the unit's smallest |w| zeroed (the curves methods.md section 4 "
             "specifies). Channels: the weakest output channels (L1) that channel pruning removes for the same "
             "parameter fraction, zeroed with their BatchNorm scale and shift (what Torch-Pruning's removal "
             f"computes). {result['seconds']:.0f} s.", "",
             "`fusion-prune curve-shapes --dense " + " ".join([args.dense, *(["--variants", *args.variants]
                                                                   if args.variants else [])]) + "`", "",
             *format_curve_shapes(result)]
    Path(args.report).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def _latency_table(args) -> None:
    from ..analysis.latency_report import latency_report, measure
    from ..analysis.plots import latency_table_plot

    result = measure(args.dense, round_to=args.round_to, iterations=args.iterations)
    lines = latency_report(result, args.dense, Path(args.plot).name)
    latency_table_plot(result["table"], result["modality"], Path(args.plot))
    Path(args.report).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def _altermoma_b_sweep(args) -> None:
    from ..analysis.altermoma_b_sweep import BSweepConfig, format_b_sweep, run_b_sweep

    cfg = BSweepConfig(steps=tuple(args.steps), sparsity=args.sparsity)
    result = run_b_sweep(args.dense, cfg, quiet=args.quiet)
    lines = ["# AlterMOMA: the B sweep (reactivation steps)", "",
             "Generated by `fusion-prune altermoma-b-sweep --dense " + args.dense + " --steps "
             + " ".join(map(str, args.steps)) + f" --sparsity {args.sparsity}` (fusion_prune_ros/prune/"
             "altermoma_b_sweep.py): one reactivation run per masked modality (Adam, lr "
             f"{result['reactivation_lr']:g}, batch {result['batch_size']}, the scorer's data and seed), theta_B taken "
             "at every B; AlterEva with alpha = beta = 1, per-module normalisation, as the sweep's variants (B = 100). "
             "Channels reactivated: of the channels in the bottom half of their unit by DeCI, those in the top "
             f"quarter by |theta0 g| with the other modality masked at theta_B. {result['seconds']:.0f} s.", "",
             *format_b_sweep(result)]
    Path(args.report).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def _demo(args) -> None:
    from ..demo import DemoConfig, format_demo, run_demo

    cfg = DemoConfig(out=args.out, profile=args.profile or "", scenario=args.scenario or "",
                     in_process=args.in_process, scene_seconds=args.scene_seconds, rate=args.rate,
                     backend=args.backend, device=args.device)
    results = run_demo(cfg, quiet=args.quiet)
    print(format_demo(results))
    print(f"timeline: {Path(args.out) / 'timeline.png'}, BEV: {Path(args.out) / 'bev.png'}, "
          f"details: {Path(args.out) / 'demo.json'}")


def _variant_latency(args) -> None:
    from ..analysis.variant_latency import GPU_LATENCY, time_variants, write_latency

    result = time_variants(Path(args.dense), Path(args.variants), args.backend, args.device, args.iterations,
                           fp16=None if args.precision == "auto" else args.precision == "fp16")
    out = Path(args.out) if args.out else Path(args.variants) / GPU_LATENCY
    write_latency(result, out)
    dense = result["latency_ms"]["dense"]["fused"]["median_ms"]
    print(f"{result['backend']} on {result['device_name']}, {result['iterations']} calls per graph -> {out}")
    print(f"{'variant':<34} {'fused ms':>9} {'p95':>7} {'vs dense':>8} {'lidar ms':>9} {'camera ms':>10}")
    for name, t in result["latency_ms"].items():
        print(f"{name:<34} {t['fused']['median_ms']:>9.2f} {t['fused']['p95_ms']:>7.2f} "
              f"{dense / t['fused']['median_ms']:>7.2f}x {t['lidar']['median_ms']:>9.2f} {t['camera']['median_ms']:>10.2f}")
    if "device_ms" in result:
        print("the CUDA graph alone (inputs already on the GPU, CUDA events):")
        dense = result["device_ms"]["dense"]["fused"]["median_ms"]
        for name, t in result["device_ms"].items():
            print(f"{name:<34} {t['fused']['median_ms']:>9.3f} {t['fused']['p95_ms']:>7.3f} "
                  f"{dense / t['fused']['median_ms']:>7.2f}x {t['lidar']['median_ms']:>9.3f} "
                  f"{t['camera']['median_ms']:>10.3f}")


def _bench(args) -> None:
    from ..bench import run_bench

    print(run_bench(args.profile, args.bag, Path(args.out), args.iterations, args.frames, dds=not args.no_dds))


def _soak(args) -> None:
    from ..runtime.core import CoreConfig
    from ..soak import SoakConfig, soak, summary

    out = Path(args.out)
    if out.exists():
        raise UserError(f"output folder already exists: {out}")
    cfg = CoreConfig(profile=args.profile, backend=args.backend, device=args.device)
    result = soak(args.bag, cfg, out, SoakConfig(frames=args.frames, budgets_ms=args.budgets_ms), quiet=args.quiet)
    print(summary(result))
    if not result["passed"]:
        raise SystemExit(1)


def _ros_setup(args) -> None:
    from ..ros.interfaces.build import setup_interfaces

    s = setup_interfaces(force=args.force, quiet=args.quiet)
    print(f"ros-setup: built {', '.join(s['built']) or 'nothing'}"
          + "".join(f"; {p}: {why}" for p, why in s["skipped"].items()) + f" ({s['seconds']:.0f} s)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fusion-prune", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("synth", help="generate a nuScenes-format data set",
                       description="Generate a camera + LiDAR data set in the exact nuScenes format (tables, "
                                   "files, channel names, official split scene names).")
    p.add_argument("--out", required=True, help="output data root (must not exist)")
    p.add_argument("--config", help="YAML with SynthConfig fields; flags override it")
    p.add_argument("--version", choices=("v1.0-mini", "v1.0-trainval"))
    p.add_argument("--train-scenes", type=int)
    p.add_argument("--val-scenes", type=int)
    p.add_argument("--scene-seconds", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--image-size", help="camera resolution WxH (default 400x225)")
    p.add_argument("--lidar-azimuth-steps", type=int, help="LiDAR horizontal resolution (default 1000)")
    p.add_argument("--no-camera-sweeps", action="store_true",
                   help="render camera images at key frames only (training sets: 5x fewer images)")
    p.add_argument("--workers", type=int, help="processes (default: one per core)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_synth)

    p = sub.add_parser("to-bag", help="convert nuScenes scenes to ROS 2 bags",
                       description="Write rosbag2 bags (MCAP or sqlite3) from nuScenes scenes: PointCloud2, "
                                   "CompressedImage + CameraInfo, /tf, /tf_static, ground-truth markers.")
    p.add_argument("--dataroot", required=True)
    p.add_argument("--version", default="v1.0-mini")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--scene", nargs="+", help="scene name(s) written into one bag")
    group.add_argument("--split", help="one bag per scene of this split, under --out")
    p.add_argument("--out", required=True, help="bag path (or folder of bags with --split); must not exist")
    p.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_to_bag)

    p = sub.add_parser("train", help="train the fusion detector (resumes from --out/last.pt)",
                       description="Train the detector of a config YAML, then score it on the validation split "
                                   "(fused, camera lost, LiDAR lost). Run under torchrun for DistributedDataParallel.")
    p.add_argument("--config", required=True, help="detector YAML (config/detector/base.yaml)")
    p.add_argument("--out", required=True, help="run folder: last.pt, model.pt, metrics.json, train_log.jsonl")
    p.add_argument("--dataroot", help="override the config's data root")
    p.add_argument("--steps", type=int, help="override the config's optimiser steps")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--no-eval", action="store_true", help="skip the evaluation at the end")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_train)

    p = sub.add_parser("export", help="export a checkpoint to a deployable model folder (+ a profile)",
                       description="Write the fused, LiDAR-only and camera-only ONNX graphs (opset 18, static "
                                   "shapes), check ONNX Runtime against PyTorch (< 1e-3), measure ONNX Runtime CPU "
                                   "latency, write metadata.json, and optionally a profile listing the graphs.")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--out", required=True, help="model folder (models/base)")
    p.add_argument("--name", default="dense", help="variant name prefix")
    p.add_argument("--profile", help="write a profile YAML for the node (config/profiles/dense.yaml)")
    p.add_argument("--iterations", type=int, default=20, help="timed runs per graph")
    p.set_defaults(func=_export)

    p = sub.add_parser("replay", help="play a bag through the node's pipeline in-process (no DDS), and score it",
                       description="Drive the node's own logic on the bag's clock: real compute time counts (a sweep "
                                   "arriving while the previous frame runs is dropped, with a reason) unless "
                                   "--no-drop. A scenario YAML scripts budget changes, blackouts and flapping. "
                                   "Writes output_bag/, replay.json and timeline.png.")
    p.add_argument("--bag", required=True)
    p.add_argument("--profile", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--scenario", help="scenario YAML (config/scenarios/)")
    p.add_argument("--budget-ms", type=float, default=400.0, help="initial latency budget")
    p.add_argument("--backend", default="onnxruntime")
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-drop", action="store_true", help="process every sweep (accuracy-only runs)")
    p.add_argument("--loops", type=int, default=1, help="play the bag this many times on one continuous clock")
    p.add_argument("--score-threshold", type=float, default=0.05,
                   help="lowest published score (default: the evaluation threshold; the live node uses 0.3)")
    p.add_argument("--dataroot", help="nuScenes data root of the bag, to score the replay")
    p.add_argument("--version", default="v1.0-mini")
    p.add_argument("--split", default="mini_val")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_replay)

    p = sub.add_parser("eval", help="score predictions with the official nuScenes detection metric",
                       description="Score a detector checkpoint (under each modality condition), a nuScenes "
                                   "detection results JSON, or the ground truth itself (a sanity check) with the "
                                   "devkit's DetectionEval (detection_cvpr_2019).")
    p.add_argument("--checkpoint", help="detector checkpoint (model.pt): run it on the split's frames")
    p.add_argument("--conditions", nargs="+", choices=("fused", "camera_lost", "lidar_lost"))
    p.add_argument("--dataroot")
    p.add_argument("--version", default="v1.0-mini")
    p.add_argument("--split", help="default: mini_val, or the checkpoint's validation split")
    p.add_argument("--results", help="nuScenes detection results JSON")
    p.add_argument("--ground-truth", action="store_true", help="score the ground truth as predictions")
    p.add_argument("--out", default="runs/eval", help="folder for metrics_summary.json")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_eval)

    p = sub.add_parser("prune", help="prune the dense model with one method at one sparsity and granularity",
                       description="Score, prune (channel: physically with Torch-Pruning; unstructured; 2:4), "
                                   "fine-tune with the shared budget, evaluate (fused, camera lost, LiDAR lost), "
                                   "export ONNX, measure latency, write manifest.json. Resumable.")
    p.add_argument("--dense", required=True, help="dense model.pt (models/base/model.pt)")
    p.add_argument("--method", required=True, help="magnitude, taylor, snip, random, altermoma, crossprune, "
                                                    "mmprune4u, dm3d")
    p.add_argument("--sparsity", type=float, required=True, help="fraction of prunable parameters removed")
    p.add_argument("--granularity", default="channel", choices=("channel", "nm24", "unstructured"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--config", help="PruneConfig YAML (default: the sweep's budget, 300 steps, 128 calibration frames)")
    p.add_argument("--out", default="runs/variants")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_prune)

    p = sub.add_parser("sweep", help="run (or resume) a pruning sweep, write the results table, plots and profile",
                       description="Methods x levels x granularities from a sweep YAML; finished variants are not "
                                   "redone. Writes docs/pruning_results.{md,csv}, pareto_<granularity>.png and, "
                                   "with --profile, the node's profile of Pareto-optimal variants.")
    p.add_argument("--dense", required=True)
    p.add_argument("--config", required=True, help="sweep YAML (config/prune/sweep.yaml)")
    p.add_argument("--out", default="runs/variants")
    p.add_argument("--docs", default="docs")
    p.add_argument("--profile", help="write this profile YAML")
    p.add_argument("--ship", metavar="DIR", help="copy the profile's pruned variants here (e.g. models/variants) "
                   "and point the profile at the copies")
    p.add_argument("--max-nds-loss", type=float, default=0.05,
                   help="latency steps of the profile lose at most this much NDS against the dense fused model")
    p.add_argument("--min-step-gain", type=float, default=0.10,
                   help="each latency step of the profile is at least this fraction faster than the one above it "
                   "(steps within the timing noise are thinned out)")
    p.add_argument("--limit", type=int, help="run at most this many new variants now")
    p.add_argument("--report-only", action="store_true", help="only rebuild the table, plots and profile")
    p.add_argument("--remeasure", action="store_true",
                   help="re-time the dense model and every variant side by side first (on an otherwise idle machine)")
    p.add_argument("--carry", metavar="CSV", help="take the rows of planned variants whose folders are not in --out "
                   "from this earlier results CSV instead of building them (e.g. docs/pruning_results.csv on a fresh "
                   "machine)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_sweep)

    p = sub.add_parser("variant-latency", help="time the dense model and every sweep variant side by side on one "
                       "backend (e.g. PyTorch CUDA on a lent GPU)",
                       description="Writes <variants>/latency_gpu.json (or --out), which the sweep report shows as "
                                   "the gpu_ms / gpu_speedup columns.")
    p.add_argument("--dense", default="models/base", help="the dense model folder (detector.yaml, graphs, model.pt)")
    p.add_argument("--variants", default="runs/variants")
    p.add_argument("--backend", default="torch", choices=("torch", "onnxruntime", "tensorrt"))
    p.add_argument("--device", default="cuda")
    p.add_argument("--precision", default="auto", choices=("auto", "fp16", "fp32"),
                   help="torch backend: auto = fp16 with a CUDA graph on a GPU, fp32 on the CPU")
    p.add_argument("--iterations", type=int, default=100)
    p.add_argument("--out", help="JSON path (default <variants>/latency_gpu.json)")
    p.set_defaults(func=_variant_latency)

    p = sub.add_parser("allocation-ablation", help="DM3D's DP allocation vs uniform at equal FLOPs (no fine-tuning)")
    p.add_argument("--dense", required=True)
    p.add_argument("--out", default="runs/allocation_ablation")
    p.add_argument("--sparsities", type=float, nargs="+", default=[0.5, 0.8])
    p.add_argument("--conditions", nargs="+", default=["fused"], choices=("fused", "camera_lost", "lidar_lost"))
    p.add_argument("--scale", default="forward", choices=("forward", "hessian"),
                   help="DM3D's curves on the forward-measured scale (the scorer's default) or raw")
    p.add_argument("--report", default="docs/dm3d_allocation.md", help="Markdown table written here")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_allocation_ablation)

    p = sub.add_parser("curve-shapes", help="each unit's distortion curve with its weakest weights vs its weakest "
                       "whole channels removed (what the layer-adaptive allocators price vs what channel pruning does)")
    p.add_argument("--dense", required=True)
    p.add_argument("--batches", type=int, default=2, help="calibration batches of 8 frames (MMPrune4U uses 2)")
    p.add_argument("--variants", nargs="*", default=[], metavar="DIR",
                   help="channel-pruned variant folders: their allocations' summed vs joint distortion")
    p.add_argument("--report", default="docs/curve_shapes.md", help="Markdown table written here")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_curve_shapes)

    p = sub.add_parser("latency-table", help="time every prunable conv alone at pruned widths (the latency cost "
                       "DM3D's allocator can spend instead of FLOPs)")
    p.add_argument("--dense", required=True)
    p.add_argument("--round-to", type=int, default=8, help="widths in multiples of this (the sweep's round_to)")
    p.add_argument("--iterations", type=int, default=40)
    p.add_argument("--report", default="docs/latency_table.md", help="Markdown table written here")
    p.add_argument("--plot", default="docs/latency_table.png")
    p.set_defaults(func=_latency_table)

    p = sub.add_parser("altermoma-b-sweep", help="AlterMOMA's scores for several numbers of reactivation steps B "
                       "(one reactivation run per masked modality; no pruning, no fine-tuning)")
    p.add_argument("--dense", required=True)
    p.add_argument("--steps", type=int, nargs="+", default=[0, 25, 50, 100, 200])
    p.add_argument("--sparsity", type=float, default=0.8, help="global threshold of the 'removed' columns")
    p.add_argument("--report", default="docs/altermoma_b_sweep.md", help="Markdown table written here")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_altermoma_b_sweep)

    p = sub.add_parser("play", help="publish a rosbag2 over DDS as ros2 bag play does, for machines without ros2 bag",
                       description="Publish every message of a bag (a bag directory of any name, or a file in one; "
                                   "MCAP or sqlite3) at its recorded pace times --rate, as raw CDR with the original "
                                   "header stamps, with sensor QoS for sensor topics and latched /tf_static. Like "
                                   "`ros2 bag play`, no /clock unless --clock.")
    p.add_argument("bag")
    p.add_argument("--rate", type=float, default=1.0)
    p.add_argument("--topics", nargs="+", help="only these topics")
    p.add_argument("--clock", action="store_true", help="publish /clock (bag time) for nodes with use_sim_time")
    p.add_argument("--wait-for-subscribers", type=float, default=0.0, metavar="S",
                   help="wait up to S seconds for every topic to have a subscriber before starting")
    p.set_defaults(func=_play)

    p = sub.add_parser("record", help="record the node's outputs (and other topics) from DDS into a bag",
                       description="Write /fusion_prune/* and /diagnostics (plus --topic NAME:TYPE ...) into an MCAP "
                                   "rosbag2 with rosbags, for machines without ros2 bag. Stops after --duration "
                                   "seconds or on Ctrl-C.")
    p.add_argument("--out", required=True)
    p.add_argument("--duration", type=float, default=60.0)
    p.add_argument("--topic", action="append", help="extra topic as NAME:TYPE")
    p.set_defaults(func=_record)

    p = sub.add_parser("demo", help="the whole onboard story: generate, bag, play through the node, score",
                       description="Generate a short scene, convert it to a bag, play it through the real node over "
                                   "DDS on loopback (or --in-process), with a scenario (budget tightens, cameras black "
                                   "out and recover); record, score per segment, print a summary, write plots.")
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--profile", help="default: config/profiles/default.yaml")
    p.add_argument("--scenario", help="default: config/scenarios/demo.yaml")
    p.add_argument("--in-process", action="store_true", help="replay in-process (no DDS)")
    p.add_argument("--scene-seconds", type=float, default=20.0)
    p.add_argument("--rate", type=float, default=0.5, help="bag playback rate over DDS (the node follows /clock)")
    p.add_argument("--backend", default="onnxruntime")
    p.add_argument("--device", default="cpu")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_demo)

    p = sub.add_parser("bench", help="measure latency per variant and backend, node overhead, switch cost, DDS",
                       description="Timing tables (median, p95, ratio vs the dense model measured in the same run), "
                                   "printed and written to docs/benchmarks.md.")
    p.add_argument("--profile", default="config/profiles/default.yaml")
    p.add_argument("--bag", help="a bag for whole-frame timings (fusion-prune to-bag)")
    p.add_argument("--out", default="docs/benchmarks.md")
    p.add_argument("--iterations", type=int, default=30)
    p.add_argument("--frames", type=int, default=60)
    p.add_argument("--no-dds", action="store_true", help="skip the DDS delivery measurement")
    p.set_defaults(func=_bench)

    p = sub.add_parser("soak", help="a long looped replay: memory, descriptors, threads, accounting, latency",
                       description="Loop the bag through the node's pipeline at the live pace with the budget changing "
                                   "every pass; fail (exit 1) on resident-memory growth >= 5%% after warm-up, any "
                                   "descriptor or thread growth, or a sweep neither processed nor dropped with a "
                                   "reason. Writes soak.json, soak.png and output_bag/.")
    p.add_argument("--bag", required=True)
    p.add_argument("--profile", default="config/profiles/default.yaml")
    p.add_argument("--out", required=True)
    p.add_argument("--frames", type=int, default=10_000, help="LiDAR sweeps to play")
    p.add_argument("--budgets-ms", type=float, nargs="+", default=[400.0, 60.0, 150.0],
                   help="latency budgets, one per pass over the bag, cycled")
    p.add_argument("--backend", default="onnxruntime")
    p.add_argument("--device", default="cpu")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_soak)

    p = sub.add_parser("ros-setup", help="build the ROS interface packages PyPI lacks (vision_msgs, tf2_msgs)",
                       description="Build vision_msgs and tf2_msgs from the package's .msg files into this Python "
                                   "environment with the PyPI ROS 2 wheels' rosidl generators (needs cmake, make and "
                                   "a C/C++ compiler). Idempotent; skipped where a sourced ROS 2 provides them.")
    p.add_argument("--force", action="store_true", help="rebuild even if up to date")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_ros_setup)

    p = sub.add_parser("show", help="plot a sample: six cameras, and LiDAR + boxes from above",
                       description="Write <scene>_cameras.png and <scene>_bev.png for one sample of a scene.")
    p.add_argument("--dataroot", required=True)
    p.add_argument("--version", default="v1.0-mini")
    p.add_argument("--scene", required=True)
    p.add_argument("--sample", type=int, default=0, help="index of the key frame in the scene")
    p.add_argument("--out", default="docs")
    p.set_defaults(func=_show)
    return parser


def main(argv=None) -> int:
    # SIGTERM (a stopped job, `kill`) unwinds like Ctrl-C, so every stage removes its half-written output.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    args = build_parser().parse_args(argv)
    if args.command in ("train", "prune", "sweep", "allocation-ablation"):
        # Before any parallel region: the flag is per thread, and OpenMP workers inherit it only when created after.
        from ..train import flush_denormals

        flush_denormals()
    try:
        args.func(args)
    except UserError as e:
        print(f"fusion-prune {args.command}: error: {e}", file=sys.stderr)
        return 2
    return 0
