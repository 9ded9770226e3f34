"""`fusion-prune demo`: the whole onboard story on this machine, from nothing but the package registries.

Generate a short nuScenes-format scene, convert it to a ROS 2 bag, play it through the real node over DDS on
loopback (or in-process through the same logic with `--in-process`) under a scenario (the budget tightens, the
cameras black out and come back), record the node's outputs, score them with the official nuScenes metric overall
and per segment, and print a summary: frames, drops and reasons, switches and reasons, per-variant latency,
mAP / NDS per segment. Over DDS it also replays the same bag and scenario in-process (`fusion-prune replay`, at the
live pace, with drops) and prints both runs' metrics side by side: the replay predicts what the node does. Writes
the timeline plot and a BEV image of detections.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from ..paths import share_file
from ..ros.topics import (ACTIVE_VARIANT_TOPIC, DETECTIONS_TOPIC, DIAGNOSTICS_TOPIC, LATCHED_OUTPUTS, LIDAR_TOPIC,
                         OUTPUT_TOPICS)

SCORE_THRESHOLD = 0.05  # the evaluation threshold: the demo scores what the node publishes


@dataclass
class DemoConfig:
    out: str = "runs/demo"
    profile: str = ""
    scenario: str = ""
    in_process: bool = False
    scene_seconds: float = 20.0
    seed: int = 0
    # Quarter speed: player, node and recorder share two cores, and a sweep the node drops because a shared core held
    # it up changes what is scored (the in-process replay, fed at the same rate, shares no core with a player or a
    # recorder). The node runs on the bag's time
    # (/clock, use_sim_time) for what it stamps itself; its sensor health reads header stamps, so the rate and the
    # clock change no verdict.
    rate: float = 0.25
    backend: str = "onnxruntime"
    device: str = "cpu"


def run_demo(cfg: DemoConfig, quiet: bool = False) -> dict:
    from ..bag.scenario import load_scenario
    from ..bag.to_bag import convert
    from ..data.nusc import open_nuscenes
    from ..data.synth.generate import SynthConfig, generate

    out = Path(cfg.out)
    if out.exists():
        raise UserError(f"output folder already exists: {out} (choose another --out or remove it)")
    profile = cfg.profile or str(share_file("config/profiles/default.yaml"))
    scenario = load_scenario(cfg.scenario or share_file("config/scenarios/demo.yaml"))
    out.mkdir(parents=True)
    generate(SynthConfig(train_scenes=0, val_scenes=1, scene_seconds=cfg.scene_seconds, seed=cfg.seed),
             out / "nuscenes", quiet=quiet)
    nusc = open_nuscenes(out / "nuscenes", "v1.0-mini")
    scene = nusc.scene[0]["name"]
    convert(nusc, [scene], out / "scene", progress=not quiet)
    if cfg.in_process:
        results, detections = _in_process(cfg, profile, scenario, out, quiet)
    else:
        results, detections = _over_dds(cfg, profile, scenario, out)
        replayed, _ = _in_process(cfg, profile, scenario, out, quiet, plot=False)
        results["replay"] = {k: v for k, v in replayed.items() if k != "frames"}  # replay/replay.json has them
    results["mode"] = "in-process" if cfg.in_process else "DDS (loopback)"
    (out / "demo.json").write_text(json.dumps(results, indent=1))
    _bev_image(nusc, out, detections)
    return results


def _in_process(cfg: DemoConfig, profile: str, scenario, out: Path, quiet: bool, plot: bool = True) -> tuple:
    from ..bag.replay import replay, score, timeline_plot, write_results
    from ..runtime.core import CoreConfig
    from ..runtime.policy import PolicyConfig

    core_cfg = CoreConfig(profile=profile, backend=cfg.backend, device=cfg.device, score_threshold=SCORE_THRESHOLD,
                          policy=PolicyConfig(latency_budget_ms=scenario.setting("budget_ms", 0.0) or 200.0))
    core, record = replay(out / "scene", core_cfg, out / "replay", scenario, quiet=quiet, rate=cfg.rate)
    # Scored from the published messages, as the DDS run is: vision_msgs/Detection3D carries no velocity (nor the
    # attributes derived from it), so what a subscriber receives scores differently from the in-memory boxes.
    record.detections = _read_outputs(out / "scene", out / "replay" / "output_bag")[0].detections
    metrics = score(record, scenario, str(out / "nuscenes"), "v1.0-mini", "mini_val", out / "replay")
    results = write_results(core, record, metrics, out / "replay")
    if plot:
        timeline_plot(record, core, out / "timeline.png", f"in-process replay, scenario {scenario.name}")
    return results, record.detections


def _over_dds(cfg: DemoConfig, profile: str, scenario, out: Path) -> tuple:
    """The real node as a process; this process plays the bag, drives the scenario and records the outputs."""
    from ..bag.replay import score
    from ..ros.play import play
    from ..ros.record import Recorder
    from ..ros.remote import NodeClient, NodeProcess

    domain = 60 + os.getpid() % 40
    budget = scenario.setting("budget_ms", 0.0) or 200.0
    node = NodeProcess({"profile": profile, "backend": cfg.backend, "device": cfg.device,
                        "latency_budget_ms": float(budget), "score_threshold": SCORE_THRESHOLD,
                        "use_sim_time": True},
                       domain, out / "node.log")
    client = NodeClient(domain, "fusion_prune_demo")
    try:
        recorder = Recorder(client.node, out / "output_bag", OUTPUT_TOPICS, latched=LATCHED_OUTPUTS)
        client.configure_and_activate()
        applied = {"budget_ms": budget, "override": None}

        def skip(topic: str, t: float) -> bool:
            for key, param in (("budget_ms", "latency_budget_ms"), ("override", "override_variant")):
                value = scenario.setting(key, t)
                if value is not None and value != applied[key]:
                    applied[key] = value
                    client.set_params(**{param: float(value) if key == "budget_ms" else value})
            sensor = topic.strip("/").split("/")[0]
            return scenario.blocked(sensor, t)

        counts = play(out / "scene", rate=cfg.rate, clock=True, node=client.node, wait_for_subscribers_s=15.0,
                      skip=skip)
        time.sleep(2.0)
        recorder.close()
    finally:
        client.close()
        code = node.stop()
    record, variants, diag = _read_outputs(out / "scene", out / "output_bag")
    metrics = score(record, scenario, str(out / "nuscenes"), "v1.0-mini", "mini_val", out / "dds")
    switches = []
    for key in sorted((k for k in diag if k.startswith("switch_")), key=lambda k: int(k.split("_")[1])):
        stamp, _, rest = diag[key].partition(": ")
        variant, _, reason = rest.partition(" (")
        switches.append({"t_ns": int(stamp), "variant": variant, "reason": reason.rstrip(")")})
    results = {"lidar_messages": counts.get(LIDAR_TOPIC, 0), "frames_out": len(record.detections),
               "start_ns": record.start_ns, "end_ns": max(record.lidar_stamps, default=record.start_ns),
               "node_exit_code": code, "metrics": metrics,
               "dropped": {k[len("dropped_"):]: int(v) for k, v in diag.items() if k.startswith("dropped_")},
               "switches": switches, "latency_ms": _latency_from_diagnostics(diag), "backend": diag.get("backend", ""),
               "variant_sequence": variants}
    _timeline_from_record(record, variants, out / "timeline.png", scenario.name)
    return results, record.detections


def _read_outputs(input_bag: Path, output_bag: Path) -> tuple:
    """(ReplayRecord with the detections by LiDAR stamp, the active-variant sequence, the last diagnostics values),
    read back from the recorded bag the way any downstream consumer reads the node."""
    from contextlib import closing

    from ..bag import typestore as ts
    from ..bag.paths import open_reader
    from ..bag.replay import ReplayRecord
    from ..ros.detection_msgs import msg_to_detections
    from ..ros.stamps import stamp_to_ns

    store = ts.typestore()
    record = ReplayRecord()
    with closing(open_reader(input_bag)) as reader:
        record.start_ns = reader.start_time
        record.lidar_stamps = [t for c, t, _ in reader.messages() if c.topic == LIDAR_TOPIC]
    variants, diag = [], {}
    with closing(open_reader(output_bag)) as reader:
        for conn, t, raw in reader.messages():
            msg = store.deserialize_cdr(raw, conn.msgtype)
            if conn.topic == DETECTIONS_TOPIC:
                record.detections[stamp_to_ns(msg.header.stamp)] = msg_to_detections(msg)
            elif conn.topic == ACTIVE_VARIANT_TOPIC:
                if not variants or variants[-1] != msg.data:
                    variants.append(msg.data)
            elif conn.topic == DIAGNOSTICS_TOPIC:
                diag = {kv.key: kv.value for s in msg.status for kv in s.values}
    return record, variants, diag


def _latency_from_diagnostics(diag: dict) -> dict:
    out = {}
    for key, value in diag.items():
        if key.startswith("latency_") and key.endswith("_frames"):
            v = key[len("latency_"):-len("_frames")]
            out[v] = {"frames": int(value), "p50": float(diag[f"latency_{v}_p50_ms"]),
                      "p95": float(diag[f"latency_{v}_p95_ms"])}
    return out


def _timeline_from_record(record, variants: list, path: Path, scenario: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stamps = sorted(record.detections)
    fig, ax = plt.subplots(figsize=(10, 3), dpi=100)
    ax.plot([(s - record.start_ns) * 1e-9 for s in stamps], [len(record.detections[s]) for s in stamps], ".", ms=3)
    ax.set_xlabel("bag time [s]")
    ax.set_ylabel("published boxes")
    ax.set_title(f"over DDS, scenario {scenario}: variants {' -> '.join(variants)}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _bev_image(nusc, out: Path, detections: dict) -> None:
    """The middle key frame: LiDAR, ground truth and the node's published boxes, from above."""
    from ..data.frame import load_frame
    from ..evaluation.metrics import ground_truth
    from .viz import bev_plot

    scene = nusc.scene[0]
    token = scene["first_sample_token"]
    for _ in range(scene["nbr_samples"] // 2):
        token = nusc.get("sample", token)["next"]
    det = detections.get(nusc.get("sample", token)["timestamp"] * 1000)
    if det is not None:
        det = det.select(det.scores >= 0.3)
    bev_plot(load_frame(nusc, token, n_sweeps=1).points, out / "bev.png", truth=ground_truth(nusc, token, min_points=1),
             predicted=det, title=f"{scene['name']}: ground truth (solid), detections with score >= 0.3 (dashed)")


def format_demo(results: dict) -> str:
    from ..bag.replay import summary_table

    text = summary_table(results, f"demo ({results['mode']})")
    replayed = results.get("replay")
    if replayed is None:
        return text
    lines = ["", "the same bag and scenario replayed in-process (fusion-prune replay at the same rate, with drops):",
             f"  sweeps {replayed['lidar_messages']}, frames {replayed['frames_out']}, dropped: "
             + (", ".join(f"{k} {v}" for k, v in sorted(replayed["dropped"].items())) or "none"),
             "  switches: " + "; ".join(f"{(s['t_ns'] - replayed['start_ns']) * 1e-9:.2f} s -> {s['variant']} "
                                        f"({s['reason']})" for s in replayed["switches"]),
             f"{'segment':<14}{'samples':>8}{'DDS mAP':>9}{'DDS NDS':>9}{'replay mAP':>12}{'replay NDS':>12}"
             f"{'NDS diff':>10}"]
    for seg, m in results.get("metrics", {}).items():
        r = replayed["metrics"].get(seg)
        if r is not None:
            lines.append(f"{seg:<14}{m['samples']:>8}{m['mAP']:>9.4f}{m['NDS']:>9.4f}{r['mAP']:>12.4f}"
                         f"{r['NDS']:>12.4f}{m['NDS'] - r['NDS']:>+10.4f}")
    return text + "\n" + "\n".join(lines)
