"""Data set commands: `synth` (generate a nuScenes-format set), `to-bag` (scenes -> ROS 2 bags), `show` (plot a
sample)."""
from __future__ import annotations

from pathlib import Path

from ..errors import UserError
from .common import add_quiet, command

SYNTH_OVERRIDES = ("version", "train_scenes", "val_scenes", "scene_seconds", "seed", "lidar_azimuth_steps", "workers")


def _synth(args) -> None:
    from ..config import load_yaml
    from ..data.synth.generate import SynthConfig, generate

    cfg = load_yaml(SynthConfig, args.config) if args.config else SynthConfig()
    for key in SYNTH_OVERRIDES:
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


def add_synth(sub) -> None:
    p = command(sub, "synth", _synth, "generate a nuScenes-format data set",
                "Generate a camera + LiDAR data set in the exact nuScenes format (tables, files, channel names, "
                "official split scene names). The detector's training set: --out data/trainval --version "
                "v1.0-trainval --train-scenes 150 --val-scenes 25 --no-camera-sweeps (about 26 minutes on 2 cores).")
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
    add_quiet(p)


def _to_bag(args) -> None:
    from ..bag.to_bag import convert
    from ..data.nusc import open_nuscenes, split_scene_names

    nusc = open_nuscenes(args.dataroot, args.version)
    if not args.split:
        summary = convert(nusc, args.scene, Path(args.out), storage=args.storage, progress=not args.quiet)
        print(f"wrote {args.out}: {summary}")
        return
    names = [s["name"] for s in nusc.scene if s["name"] in split_scene_names(args.split)]
    if not names:
        raise UserError(f"no scene of split {args.split} in {args.dataroot}")
    out = Path(args.out)
    if out.exists():
        raise UserError(f"output directory already exists: {out}")
    for name in names:
        summary = convert(nusc, [name], out / name, storage=args.storage, progress=not args.quiet)
        print(f"wrote {out / name}: {summary}")


def add_to_bag(sub) -> None:
    p = command(sub, "to-bag", _to_bag, "convert nuScenes scenes to ROS 2 bags",
                "Write rosbag2 bags (MCAP or sqlite3) from nuScenes scenes: PointCloud2, CompressedImage + "
                "CameraInfo, /tf, /tf_static, ground-truth markers.")
    p.add_argument("--dataroot", required=True)
    p.add_argument("--version", default="v1.0-mini")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--scene", nargs="+", help="scene name(s) written into one bag")
    group.add_argument("--split", help="one bag per scene of this split, under --out")
    p.add_argument("--out", required=True, help="bag path (or folder of bags with --split); must not exist")
    p.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap")
    add_quiet(p)


def _show(args) -> None:
    from ..data.frame import load_frame
    from ..data.nusc import open_nuscenes
    from ..evaluation.metrics import ground_truth
    from ..tools.viz import bev_plot, camera_mosaic

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
    cameras, bev = out / f"{scene['name']}_cameras.png", out / f"{scene['name']}_bev.png"
    camera_mosaic(frame.images, frame.camera_names, cameras, title)
    bev_plot(frame.points, bev, truth=ground_truth(nusc, token, min_points=1),
             title=f"{title}: LiDAR + boxes with points")
    print(f"wrote {cameras} and {bev}")


def add_show(sub) -> None:
    p = command(sub, "show", _show, "plot a sample: six cameras, and LiDAR + boxes from above",
                "Write <scene>_cameras.png and <scene>_bev.png for one sample of a scene.")
    p.add_argument("--dataroot", required=True)
    p.add_argument("--version", default="v1.0-mini")
    p.add_argument("--scene", required=True)
    p.add_argument("--sample", type=int, default=0, help="index of the key frame in the scene")
    p.add_argument("--out", default="runs/show")


COMMANDS = (add_synth, add_to_bag, add_show)
