"""`fusion-prune bench`: measured timings, printed as tables and written to docs/benchmarks.md.

- network: per variant of a profile and per backend available here, median / p95 of the graph alone, and the
  ratio against the dense fused graph measured in the same run;
- frame: per variant, whole frames of a bag through the node's core (cloud assembly, preprocessing, network,
  decoding): p50 / p95, the network's share, the node's overhead (everything but the network) as a ratio of the
  network's time and of the dense fused network's, and the frame time as a ratio of the dense fused model's frame
  time, timed in alternating rounds in the same run;
- budget adherence: the share of frames within a latency budget the ladder can meet, the policy choosing variants
  (tools/budget_adherence.py), and the first frame after each switch against the steady p95;
- start: process start to a core with every variant loaded and warm (imports included), and the ROS node from
  process start to its lifecycle state active, driven over DDS;
- switch: the first run after a variant switch against steady state (all variants are warm in the pool);
- DDS: delivery of 1 MB best-effort PointCloud2 messages between two processes on loopback, with and without the
  shipped Fast DDS profile.
No timing is asserted anywhere in the tests; this is where timings live.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..config import DetectorConfig, load_yaml
from ..model.graph_io import zero_inputs
from ..runtime.backends import available_kinds, create_backend
from ..runtime.profile import Profile, Variant, load_profile, save_profile
from ..runtime.machine import cpu_description
from ..runtime.timing import time_calls
from .budget_adherence import WARMUP_FRAMES, budget_adherence, ladder_budgets


def graphs(profile) -> list:
    """(name, modality, onnx, checkpoint, GFLOPs) of every variant of `profile`, and the dense fused graph first
    when the profile does not hold it: the ratio column needs it, and a profile whose ladder a pruned variant tops
    (it displaced dense) has none. The dense model is the folder of the profile's detector.yaml."""
    out = [(v.name, v.modality, profile.path(v.onnx), profile.path(v.checkpoint) if v.checkpoint else None, v.gflops)
           for v in profile.variants]
    if not any(name.startswith("dense") and modality == "fused" for name, modality, *_ in out):
        folder = profile.path(profile.detector).parent
        meta = json.loads((folder / "metadata.json").read_text())
        out.insert(0, ("dense-fused (reference)", "fused", folder / "fused.onnx", folder / "model.pt",
                       meta["complexity"]["fused"]["gflops"]))
    return out


def network_table(profile: Profile, iterations: int, backends: list) -> list:
    cfg = load_yaml(DetectorConfig, profile.path(profile.detector))
    inputs = zero_inputs(cfg)
    rows = []
    for kind, device in backends:
        backend = create_backend(kind, device, threads=2)
        for name, modality, onnx, checkpoint, gflops in graphs(profile):
            session = backend.load(onnx, modality, checkpoint)
            stats = time_calls(lambda: session.run(inputs), iterations)
            rows.append({"backend": backend.describe(), "variant": name, "modality": modality, "gflops": gflops,
                         **stats})
    for r in rows:
        ref = next((x for x in rows if x["backend"] == r["backend"] and x["variant"].startswith("dense")
                    and x["modality"] == "fused"), None)
        r["speedup_vs_dense"] = round(ref["median_ms"] / r["median_ms"], 2) if ref else float("nan")
    return rows


def frame_table(profile: Profile, bag: str, frames: int, rounds: int = 2) -> list:
    """Whole frames of a bag through the node's core (no DDS, no sync wait: the frame time here is the processing,
    not the wait for late images), per graph of `graphs`: each replays the bag alone (a profile of that graph only)
    in turn, `rounds` times, so that a change of load on the machine hits every graph alike. Each replay gives at
    most `frames` frames after the warm-up the budget adherence skips too."""
    from ..bag.replay import replay
    from ..runtime.core import CoreConfig
    from ..runtime.feeder import FeederConfig
    from ..runtime.policy import PolicyConfig

    listed = graphs(profile)
    samples = {name: ([], [], [], []) for name, *_ in listed}
    with tempfile.TemporaryDirectory(prefix="bench_frames_") as tmp:
        for r in range(rounds):
            for i, (name, modality, onnx, checkpoint, _) in enumerate(listed):
                single = Path(tmp) / f"graph{i}.yaml"
                save_profile(Profile(profile.name, [Variant(name, modality, str(onnx), str(checkpoint or ""))],
                                     str(profile.path(profile.detector))), single)
                core_cfg = CoreConfig(profile=str(single), backend="onnxruntime", device="cpu",
                                      policy=PolicyConfig(latency_budget_ms=1e6, override=name))
                _, record = replay(bag, core_cfg, Path(tmp) / f"out{r}-{i}", no_drop=True, quiet=True,
                                   feeder_cfg=FeederConfig(sync_wait_s=0.0))
                ran = [f for f in record.frames if f["variant"] == name][WARMUP_FRAMES:WARMUP_FRAMES + frames]
                for series, key in zip(samples[name], ("latency_ms", "network_ms", "preprocess_ms", "decode_ms")):
                    series.extend(f[key] for f in ran)
    dense = next((name for name, modality, *_ in listed if name.startswith("dense") and modality == "fused"), None)
    dense_frame = float(np.median(samples[dense][0])) if dense and samples[dense][0] else float("nan")
    dense_network = float(np.median(samples[dense][1])) if dense and samples[dense][1] else float("nan")
    rows = []
    for name, modality, *_ in listed:
        total, network, preprocess, decoding = (np.array(x) for x in samples[name])
        if not len(total):
            continue
        overhead = float(np.median(total - network))
        rows.append({"variant": name, "modality": modality, "frames": len(total),
                     "frame_p50_ms": round(float(np.median(total)), 1),
                     "frame_p95_ms": round(float(np.percentile(total, 95)), 1),
                     "network_p50_ms": round(float(np.median(network)), 1), "overhead_p50_ms": round(overhead, 1),
                     "overhead_vs_network": round(overhead / float(np.median(network)), 2),
                     # where the overhead goes: merging the sweeps, pillars, images and grid; decoding; the rest
                     # (assembly of the frame from its messages, the policy)
                     "preprocess_p50_ms": round(float(np.median(preprocess)), 2),
                     "decode_p50_ms": round(float(np.median(decoding)), 2),
                     "rest_p50_ms": round(float(np.median(total - network - preprocess - decoding)), 2),
                     "overhead_vs_dense_network": round(overhead / dense_network, 2),
                     "frame_vs_dense": round(float(np.median(total)) / dense_frame, 2)})
    return rows


START_PROBE = """
import sys
from fusion_prune_ros.runtime.core import CoreConfig, DetectorCore
DetectorCore(CoreConfig(profile=sys.argv[1], backend="onnxruntime", device="cpu"))
print("ready", flush=True)
"""


def start_time(profile_path: str, variants: int) -> dict:
    """Seconds from starting a Python process to a core with every variant of the profile loaded and warm: what
    the node spends between its launch and being able to run a frame (ROS set-up aside)."""
    t0 = time.perf_counter()
    probe = subprocess.Popen([sys.executable, "-c", START_PROBE, str(profile_path)], stdout=subprocess.PIPE,
                             text=True)
    line = probe.stdout.readline()
    seconds = time.perf_counter() - t0
    if probe.wait(timeout=120) or line.strip() != "ready":
        raise RuntimeError(f"the start probe failed (exit code {probe.returncode})")
    return {"process_start_to_ready_s": round(seconds, 2), "variants": variants}


def node_start_to_active(profile_path: str, domain: int = 79) -> dict:
    """Seconds from starting `fusion_prune_node` to its lifecycle state `active`, driven over DDS (loopback) as an
    operator does: to its lifecycle services answering, and to `active` after configure (which loads and warms
    every variant) and activate."""
    from ..ros.remote import NodeClient, NodeProcess

    with tempfile.TemporaryDirectory(prefix="bench_node_") as tmp:
        t0 = time.perf_counter()
        process = NodeProcess({"profile": Path(profile_path).resolve(), "backend": "onnxruntime", "device": "cpu"},
                              domain, Path(tmp) / "node.log")
        client = NodeClient(domain, "bench_driver")
        try:
            client.state()  # waits for the lifecycle services
            services = time.perf_counter() - t0
            client.configure_and_activate()
            active = time.perf_counter() - t0
            if client.state() != "active":
                raise RuntimeError("the node did not reach the active state")
        finally:
            client.close()
            process.stop()
    return {"process_start_to_services_s": round(services, 2), "process_start_to_active_s": round(active, 2)}


def switch_cost(profile: Profile, iterations: int = 20) -> dict:
    """Steady-state network time vs the first run right after switching from another variant."""
    cfg = load_yaml(DetectorConfig, profile.path(profile.detector))
    from ..runtime.pool import VariantPool

    pool = VariantPool(profile, create_backend("onnxruntime", "cpu", threads=2), cfg)
    inputs = zero_inputs(cfg)
    names = profile.names()
    first, steady = [], []
    for i in range(iterations):
        a, b = names[i % len(names)], names[(i + 1) % len(names)]
        for _ in range(3):
            pool[a].run(inputs)
        t0 = time.perf_counter()
        pool[b].run(inputs)
        first.append((time.perf_counter() - t0) * 1e3)
        t0 = time.perf_counter()
        pool[b].run(inputs)
        steady.append((time.perf_counter() - t0) * 1e3)
    return {"first_after_switch_median_ms": round(float(np.median(first)), 2),
            "first_after_switch_p95_ms": round(float(np.percentile(first, 95)), 2),
            "steady_median_ms": round(float(np.median(steady)), 2),
            "steady_p95_ms": round(float(np.percentile(steady, 95)), 2), "pool_load_s": pool.report.seconds,
            "rss_with_all_variants_mb": pool.report.rss_after_mb, "rss_before_mb": pool.report.rss_before_mb}


DDS_PUB = """
import sys, time, rclpy
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import PointCloud2, PointField
rclpy.init(); n = rclpy.create_node('bench_pub')
p = n.create_publisher(PointCloud2, '/bench_cloud', qos_profile_sensor_data)
size, count = int(sys.argv[1]), int(sys.argv[2])
end = time.time() + 10
while p.get_subscription_count() == 0 and time.time() < end: time.sleep(0.05)
time.sleep(1.0)
msg = PointCloud2(height=1, width=size // 16, point_step=16, row_step=size, is_dense=True,
                  fields=[PointField(name=c, offset=4 * i, datatype=7, count=1) for i, c in enumerate('xyzi')])
msg.data = bytes(size)
for i in range(count):
    msg.header.stamp = n.get_clock().now().to_msg(); msg.header.frame_id = str(i)
    p.publish(msg); time.sleep(0.1)
time.sleep(1.0); n.destroy_node(); rclpy.shutdown()
"""

DDS_SUB = """
import json, sys, time, rclpy
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import PointCloud2
rclpy.init(); n = rclpy.create_node('bench_sub')
lat = []
def cb(m):
    lat.append((n.get_clock().now().nanoseconds - (m.header.stamp.sec * 10**9 + m.header.stamp.nanosec)) / 1e6)
n.create_subscription(PointCloud2, '/bench_cloud', cb, qos_profile_sensor_data)
end = time.time() + float(sys.argv[1])
while time.time() < end: rclpy.spin_once(n, timeout_sec=0.05)
print(json.dumps(lat)); n.destroy_node(); rclpy.shutdown()
"""


def dds_delivery(size_bytes: int = 1_000_000, count: int = 50, domain: int = 77) -> list:
    """Best-effort 1 MB clouds at 10 Hz between two processes: delivered count and latency, with and without the
    shipped Fast DDS profile (loopback only)."""
    from ..ros.remote import FASTDDS_PROFILE, PROFILE_ENV_VARS, ros_env

    rows = []
    for label, profile in (("Fast DDS defaults", None), ("shipped profile (shared memory)", FASTDDS_PROFILE)):
        env = ros_env(domain, Path("/tmp/fusion_prune_bench_roslog"))
        for var in PROFILE_ENV_VARS:
            env.pop(var, None)
            if profile is not None:
                env[var] = str(profile)
        sub = subprocess.Popen([sys.executable, "-c", DDS_SUB, str(count * 0.1 + 15)], env=env,
                               stdout=subprocess.PIPE, text=True)
        time.sleep(2.0)
        subprocess.run([sys.executable, "-c", DDS_PUB, str(size_bytes), str(count)], env=env, check=True,
                       timeout=120)
        lat = json.loads(sub.communicate(timeout=120)[0].strip().splitlines()[-1])
        rows.append({"transport": label, "sent": count, "received": len(lat),
                     "latency_p50_ms": round(float(np.median(lat)), 2) if lat else float("nan"),
                     "latency_p95_ms": round(float(np.percentile(lat, 95)), 2) if lat else float("nan")})
        domain += 1
    return rows


def markdown(title: str, rows: list) -> str:
    if not rows:
        return f"## {title}\n\n(no rows)\n"
    cols = list(rows[0])
    lines = [f"## {title}", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def run_bench(profile_path: str, bag: str | None, out: Path, iterations: int = 30, frames: int = 300,
              dds: bool = True) -> str:
    profile = load_profile(profile_path)
    kinds = [k for k in available_kinds() if k[0] != "tensorrt"] + [("torch", "cpu")]
    sections = [markdown("Network latency per variant and backend (batch 1)", network_table(profile, iterations,
                                                                                               kinds))]
    if bag:
        frame_rows = frame_table(profile, bag, frames)
        sections.append(markdown("Whole frame through the node's core (ONNX Runtime CPU, 2 threads)", frame_rows))
        ladder = [r["frame_p95_ms"] for r in frame_rows
                  if r["variant"] in profile.names() and r["modality"] in ("fused", "lidar")]
        if ladder:
            rows = budget_adherence(profile_path, bag, ladder_budgets(ladder))
            sections.append(markdown(f"Budget adherence: the bag replayed with the policy choosing variants, frames "
                                     f"after a {WARMUP_FRAMES}-frame warm-up", [asdict(r) for r in rows]))
    sections.append(markdown("Process start to a core with every variant loaded and warm",
                             [start_time(profile_path, len(profile.variants))]))
    sections.append(markdown("Variant switch cost (all variants loaded and warm)", [switch_cost(profile)]))
    if dds:
        sections.append(markdown("The node (`fusion_prune_node`) from process start to active, every variant warm, "
                                 "driven over DDS", [node_start_to_active(profile_path)]))
        sections.append(markdown("DDS delivery of 1 MB best-effort PointCloud2 at 10 Hz, two processes, loopback",
                                 dds_delivery()))
    header = (f"# Benchmarks\n\nMeasured with `fusion-prune bench` on {cpu_description()}, "
              f"{time.strftime('%Y-%m-%d')}; medians and p95 over repeated runs after warm-up.\n\n")
    text = header + "\n".join(sections)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return text
