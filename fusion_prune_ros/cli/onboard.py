"""Onboard commands: the node's pipeline on bags and over DDS (`replay`, `play`, `record`, `demo`, `bench`,
`soak`) and building the ROS interfaces PyPI lacks (`ros-setup`)."""
from __future__ import annotations

from pathlib import Path

from ..errors import UserError
from .common import add_quiet, command

DEFAULT_PROFILE = "config/profiles/default.yaml"


def _add_runtime_flags(p) -> None:
    p.add_argument("--backend", default="onnxruntime")
    p.add_argument("--device", default="cpu")


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
    core, record = replay(args.bag, cfg, out, scenario, no_drop=args.no_drop, quiet=args.quiet, loops=args.loops,
                          rate=args.rate)
    metrics = score(record, scenario, args.dataroot, args.version, args.split, out) if args.dataroot else None
    results = write_results(core, record, metrics, out)
    timeline_plot(record, core, out / "timeline.png", f"{Path(args.bag).name}, scenario {scenario.name}")
    print(summary_table(results, f"replay of {args.bag}, scenario {scenario.name}"))


def add_replay(sub) -> None:
    p = command(sub, "replay", _replay, "play a bag through the node's pipeline in-process (no DDS), and score it",
                "Drive the node's own feeder and core with the bag's messages as a player at --rate delivers them: "
                "real compute time counts (a sweep replaced while the worker is busy is dropped, with a reason) "
                "unless --no-drop. A scenario YAML scripts budget changes, blackouts and flapping. Writes "
                "output_bag/, replay.json and timeline.png.")
    p.add_argument("--bag", required=True)
    p.add_argument("--profile", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--scenario", help="scenario YAML (config/scenarios/)")
    p.add_argument("--budget-ms", type=float, default=400.0, help="initial latency budget")
    _add_runtime_flags(p)
    p.add_argument("--no-drop", action="store_true", help="process every sweep (accuracy-only runs)")
    p.add_argument("--loops", type=int, default=1, help="play the bag this many times on one continuous clock")
    p.add_argument("--rate", type=float, default=1.0, help="the player's rate the node is fed at (predicts a "
                                                           "`ros2 bag play --rate` run)")
    p.add_argument("--score-threshold", type=float, default=0.05,
                   help="lowest published score (default: the evaluation threshold; the live node uses 0.3)")
    p.add_argument("--dataroot", help="nuScenes data root of the bag, to score the replay")
    p.add_argument("--version", default="v1.0-mini")
    p.add_argument("--split", default="mini_val")
    add_quiet(p)


def _play(args) -> None:
    from ..ros.play import play

    counts = play(args.bag, rate=args.rate, clock=args.clock, topics=args.topics,
                  wait_for_subscribers_s=args.wait_for_subscribers)
    print("published: " + ", ".join(f"{t} {n}" for t, n in sorted(counts.items())))


def add_play(sub) -> None:
    p = command(sub, "play", _play, "publish a rosbag2 over DDS as ros2 bag play does, for machines without ros2 bag",
                "Publish every message of a bag (a bag directory of any name, or a file in one; MCAP or sqlite3) at "
                "its recorded pace times --rate, as raw CDR with the original header stamps, with sensor QoS for "
                "sensor topics and latched /tf_static. Like `ros2 bag play`, no /clock unless --clock.")
    p.add_argument("bag")
    p.add_argument("--rate", type=float, default=1.0)
    p.add_argument("--topics", nargs="+", help="only these topics")
    p.add_argument("--clock", action="store_true", help="publish /clock (bag time) for nodes with use_sim_time")
    p.add_argument("--wait-for-subscribers", type=float, default=0.0, metavar="S",
                   help="wait up to S seconds for every topic to have a subscriber before starting")


def _record(args) -> None:
    from ..ros.topics import LATCHED_OUTPUTS, OUTPUT_TOPICS
    from ..ros.record import record

    topics = dict(OUTPUT_TOPICS)
    for spec in args.topic or []:
        name, _, typename = spec.partition(":")
        if not typename:
            raise UserError(f"--topic needs NAME:TYPE (e.g. /LIDAR_TOP:sensor_msgs/msg/PointCloud2), got {spec!r}")
        topics[name] = typename
    counts = record(args.out, topics, args.duration, latched=LATCHED_OUTPUTS)
    print("recorded: " + ", ".join(f"{t} {n}" for t, n in sorted(counts.items())))


def add_record(sub) -> None:
    p = command(sub, "record", _record, "record the node's outputs (and other topics) from DDS into a bag",
                "Write /fusion_prune/* and /diagnostics (plus --topic NAME:TYPE ...) into an MCAP rosbag2 with "
                "rosbags, for machines without ros2 bag. Stops after --duration seconds or on Ctrl-C.")
    p.add_argument("--out", required=True)
    p.add_argument("--duration", type=float, default=60.0)
    p.add_argument("--topic", action="append", help="extra topic as NAME:TYPE")


def _demo(args) -> None:
    from ..tools.demo import DemoConfig, format_demo, run_demo

    cfg = DemoConfig(out=args.out, profile=args.profile or "", scenario=args.scenario or "",
                     in_process=args.in_process, scene_seconds=args.scene_seconds, rate=args.rate,
                     backend=args.backend, device=args.device)
    results = run_demo(cfg, quiet=args.quiet)
    print(format_demo(results))
    print(f"timeline: {Path(args.out) / 'timeline.png'}, BEV: {Path(args.out) / 'bev.png'}, "
          f"details: {Path(args.out) / 'demo.json'}")


def add_demo(sub) -> None:
    p = command(sub, "demo", _demo, "the whole onboard story: generate, bag, play through the node, score",
                "Generate a short scene, convert it to a bag, play it through the real node over DDS on loopback (or "
                "--in-process), with a scenario (budget tightens, cameras black out and recover); record, score per "
                "segment; over DDS also replay the same bag in-process at the same rate and print both side by side; "
                "write plots.")
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--profile", help=f"default: {DEFAULT_PROFILE}")
    p.add_argument("--scenario", help="default: config/scenarios/demo.yaml")
    p.add_argument("--in-process", action="store_true", help="replay in-process (no DDS)")
    p.add_argument("--scene-seconds", type=float, default=20.0)
    p.add_argument("--rate", type=float, default=0.25, help="bag playback rate over DDS (the node follows /clock), "
                                                            "and of the in-process replay beside it")
    _add_runtime_flags(p)
    add_quiet(p)


def _bench(args) -> None:
    from ..tools.bench import run_bench

    print(run_bench(args.profile, args.bag, Path(args.out), args.iterations, args.frames, dds=not args.no_dds))


def add_bench(sub) -> None:
    p = command(sub, "bench", _bench, "measure latency per variant and backend, node overhead, switch cost, DDS",
                "Timing tables (median, p95, ratio vs the dense model measured in the same run), printed and written "
                "to --out (default runs/bench/benchmarks.md; docs/benchmarks.md refreshes the committed one).")
    p.add_argument("--profile", default=DEFAULT_PROFILE)
    p.add_argument("--bag", help="a bag for whole-frame timings (fusion-prune to-bag)")
    p.add_argument("--out", default="runs/bench/benchmarks.md", help="Markdown file written")
    p.add_argument("--iterations", type=int, default=30)
    p.add_argument("--frames", type=int, default=300, help="frames per graph and round of the whole-frame table")
    p.add_argument("--no-dds", action="store_true", help="skip the DDS delivery measurement")


def _soak(args) -> None:
    from ..runtime.core import CoreConfig
    from ..tools.soak import SoakConfig, soak, summary

    out = Path(args.out)
    if out.exists():
        raise UserError(f"output folder already exists: {out}")
    cfg = CoreConfig(profile=args.profile, backend=args.backend, device=args.device)
    result = soak(args.bag, cfg, out, SoakConfig(frames=args.frames, budgets_ms=args.budgets_ms), quiet=args.quiet)
    print(summary(result))
    if not result["passed"]:
        raise SystemExit(1)


def add_soak(sub) -> None:
    p = command(sub, "soak", _soak, "a long looped replay: memory, descriptors, threads, accounting, latency",
                "Loop the bag through the node's pipeline at the live pace with the budget changing every pass; fail "
                "(exit 1) on resident-memory growth >= 5 % after warm-up, any descriptor or thread growth, or a sweep "
                "neither processed nor dropped with a reason. Writes soak.json, soak.png and output_bag/.")
    p.add_argument("--bag", required=True)
    p.add_argument("--profile", default=DEFAULT_PROFILE)
    p.add_argument("--out", required=True)
    p.add_argument("--frames", type=int, default=10_000, help="LiDAR sweeps to play")
    p.add_argument("--budgets-ms", type=float, nargs="+", default=[400.0, 60.0, 150.0],
                   help="latency budgets, one per pass over the bag, cycled")
    _add_runtime_flags(p)
    add_quiet(p)


def _ros_setup(args) -> None:
    from ..ros.interfaces.build import setup_interfaces

    s = setup_interfaces(force=args.force, quiet=args.quiet)
    print(f"ros-setup: built {', '.join(s['built']) or 'nothing'}"
          + "".join(f"; {p}: {why}" for p, why in s["skipped"].items()) + f" ({s['seconds']:.0f} s)")


def add_ros_setup(sub) -> None:
    p = command(sub, "ros-setup", _ros_setup, "build the ROS interface packages PyPI lacks (vision_msgs, tf2_msgs)",
                "Build vision_msgs and tf2_msgs from the package's .msg files into this Python environment with the "
                "PyPI ROS 2 wheels' rosidl generators (needs cmake, make and a C/C++ compiler). Idempotent; skipped "
                "where a sourced ROS 2 provides them.")
    p.add_argument("--force", action="store_true", help="rebuild even if up to date")
    add_quiet(p)


COMMANDS = (add_replay, add_play, add_record, add_demo, add_bench, add_soak, add_ros_setup)
