"""`fusion-prune <command>`: the package's one command line.

Handlers import their stage lazily, so `fusion-prune --help` and light commands do not pay for torch. A
`UserError` anywhere becomes one line on stderr and exit status 2; anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import UserError


def _synth(args) -> None:
    from .config import load_yaml
    from .data.synth.generate import SynthConfig, generate

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
    from .bag.to_bag import convert
    from .data.nusc import open_nuscenes, split_scene_names

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


def _eval(args) -> None:
    from .data.nusc import check_split, open_nuscenes
    from .evaluate import evaluate_predictions, evaluate_results, format_metrics, ground_truth_predictions

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
    from .data.frame import load_frame
    from .data.nusc import open_nuscenes
    from .evaluate import ground_truth
    from .viz import bev_plot, camera_mosaic

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

    p = sub.add_parser("eval", help="score predictions with the official nuScenes detection metric",
                       description="Score a nuScenes detection results JSON (or the ground truth itself, as a "
                                   "sanity check) with the devkit's DetectionEval (detection_cvpr_2019).")
    p.add_argument("--dataroot", required=True)
    p.add_argument("--version", default="v1.0-mini")
    p.add_argument("--split", default="mini_val")
    p.add_argument("--results", help="nuScenes detection results JSON")
    p.add_argument("--ground-truth", action="store_true", help="score the ground truth as predictions")
    p.add_argument("--out", default="runs/eval", help="folder for metrics_summary.json")
    p.set_defaults(func=_eval)

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
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except UserError as e:
        print(f"fusion-prune {args.command}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
