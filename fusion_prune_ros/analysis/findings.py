"""The pruning targets (every method vs magnitude, a 3x speed-up for <= 1 NDS point) checked against the sweep's
measured rows.

Written under the results table (`fusion-prune sweep`), so a reader sees which targets hold, by how much, and which
have not been measured yet, without redoing the arithmetic by hand. Nothing here is asserted: the numbers come from
the manifests, and a target with no rows to judge it says so.
"""
from __future__ import annotations

from collections import defaultdict
from datetime import datetime

import numpy as np

from ..runtime.latency_key import ORT_CPU_2T


MULTIMODAL = ("altermoma", "crossprune", "dm3d", "mmprune4u")
BASELINES = ("taylor", "snip", "random")
NDS_TOLERANCE = 0.005  # when no seed spread is measured yet: half an NDS point


def findings(table: list, manifests: list, floor: dict | None = None, gpu: dict | None = None) -> list:
    """Markdown lines: methods vs magnitude, seed spread, the 3x speed-up (and what a GPU measured, when one
    did), the modality split and AlterMOMA's reactivation. The gain at 80 / 90 % and the papers' claims are
    `method_claims`'s."""
    channel = [r for r in table if r["granularity"] == "channel"]
    spread = seed_spread(channel)
    lines = ["## Targets checked against the measured rows", ""]
    lines += _versus_magnitude(channel, spread)
    lines += _other_granularities(table)
    lines += _equal_cost(table)
    lines += _seeds(spread)
    lines += _speedup(table, floor)
    lines += _gpu(gpu) or _carried_gpu(table)
    lines += _modality_split(channel)
    lines += _reactivation(manifests)
    return lines


def cost(table: list, log: list, planned: list) -> list:
    """Markdown lines: the measured cost per method (scoring, fine-tuning, the rest = evaluation + export +
    latency) and the plan's remaining cost. `table`: the report's rows (scoring and fine-tuning seconds, carried
    rows included), `log`: the sweep log's entries (sweep.read_log; whole-variant wall times, for the variants
    built in this sweep folder), `planned`: the plan's variant names. The projection uses the measured throughput
    when the entries carry start and finish times (several workers overlap, so one variant's wall time overstates
    the remaining time), else the mean wall time per variant."""
    lines = ["## Cost (2-core CPU, measured)", ""]
    seconds = {e["variant"]: e["seconds"] for e in log}
    per_method = defaultdict(list)
    variants = [r for r in table if r["method"] != "dense"]
    for r in variants:
        whole = seconds.get(r["name"])
        rest = whole - r["scoring_s"] - r["finetune_s"] if whole is not None else None
        per_method[r["method"]].append((r["scoring_s"], r["finetune_s"], rest, whole))
    lines += ["| method | variants | scoring s (mean) | fine-tuning s (mean) | evaluation + export s (mean) | "
              "whole variant s (mean) |", "|---|---|---|---|---|---|"]
    for method, vals in sorted(per_method.items()):
        col = lambda i: [v[i] for v in vals if v[i] is not None]  # noqa: E731
        fmt = lambda xs: f"{sum(xs) / len(xs):.0f}" if xs else "-"  # noqa: E731
        lines.append(f"| {method} | {len(vals)} | {fmt(col(0))} | {fmt(col(1))} | {fmt(col(2))} | {fmt(col(3))} |")
    unlogged = sum(r["name"] not in seconds for r in variants)
    if unlogged:
        lines += ["", f"Evaluation + export and whole-variant times come from the sweep log, which has no entry for "
                      f"{unlogged} of the {len(variants)} variants (built in an earlier run or before the log)."]
    done = {r["name"] for r in variants}
    left = [n for n in planned if n not in done]
    head = f"Plan: {len(planned)} variants, {len(planned) - len(left)} done; {len(left)} left"
    timed = [e for e in log if "started" in e]
    if timed:
        busy, workers = busy_seconds(timed), max_overlap(timed)
        per = busy / len(timed)
        lines += ["", f"{head} at the measured throughput of {per / 60:.1f} min per variant ({len(timed)} variants "
                      f"finished in {busy / 3600:.1f} h of wall time with up to {workers} workers at once) = "
                      f"{len(left) * per / 3600:.1f} h more. Times include whatever else shared the two cores."]
    elif seconds:
        mean = sum(seconds.values()) / len(seconds)
        lines += ["", f"{head} at the measured mean of {mean / 60:.1f} min per variant = {len(left) * mean / 3600:.1f} "
                      "h more. Times include whatever else shared the two cores (see each manifest)."]
    else:
        lines += ["", f"{head} (no variant built here to measure the cost of the rest)."]
    return lines + [""]


def _intervals(entries: list) -> list:
    return sorted((datetime.fromisoformat(e["started"]).timestamp(), datetime.fromisoformat(e["finished"]).timestamp())
                  for e in entries)


def busy_seconds(entries: list) -> float:
    """Length of the union of the entries' [started, finished] intervals: wall time during which at least one
    variant was being built (gaps between sessions do not count; overlapping workers count once)."""
    total, end = 0.0, float("-inf")
    for a, b in _intervals(entries):
        if b > end:
            total += b - max(a, end)
            end = b
    return total


def max_overlap(entries: list) -> int:
    """The most entries being built at one moment (the number of workers that ran side by side)."""
    intervals = _intervals(entries)
    events = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals])
    now = most = 0
    for _, step in events:
        now += step
        most = max(most, now)
    return most


def seed_spread(rows: list) -> list:
    """Per method and level with more than one seed: mean and spread (max - min) of mAP and NDS."""
    out = []
    for (method, level), rs in sorted(_by_level(rows).items()):
        if len(rs) < 2:
            continue
        maps, ndss = [r["mAP"] for r in rs], [r["NDS"] for r in rs]
        out.append({"method": method, "sparsity": level, "seeds": len(rs), "mAP_mean": sum(maps) / len(rs),
                    "mAP_spread": max(maps) - min(maps), "NDS_mean": sum(ndss) / len(rs),
                    "NDS_spread": max(ndss) - min(ndss)})
    return out


def _seed0(rows: list) -> dict:
    return {(r["method"], r["sparsity"]): r for r in rows if r["seed"] == 0}


def _by_level(rows: list) -> dict:
    """(method, level) -> the rows of its seeds, those of the newest framework version that built any of them: a
    method rebuilt under new rules is judged on its new rows, never on a mean of old and new ones."""
    groups = defaultdict(list)
    for r in rows:
        groups[(r["method"], r["sparsity"])].append(r)
    newest = {key: max(_framework(r) for r in rs) for key, rs in groups.items()}
    return {key: [r for r in rs if _framework(r) == newest[key]] for key, rs in groups.items()}


def _framework(row) -> int:
    version = row.get("framework")
    return int(version) if version == version and version is not None else 0  # NaN: written before the column


def seed_means(rows: list) -> dict:
    """(method, level) -> {"mAP", "NDS", "seeds"}: the mean over the seeds measured (one seed: that seed's row)."""
    return {key: {"mAP": float(np.mean([r["mAP"] for r in rs])), "NDS": float(np.mean([r["NDS"] for r in rs])),
                  "seeds": len(rs)} for key, rs in _by_level(rows).items()}


def noise_margin(spread: list, a: str, b: str, level: float) -> float:
    """The NDS difference between methods a and b at `level` that is still seed noise: the larger of their NDS
    spreads when both have two seeds, else the median spread measured anywhere (else half an NDS point). The
    median, not the largest: one unstable method (AlterMOMA's 0.031 at 80 %, ten times the others') would otherwise
    loosen the verdict for every method that has one seed."""
    noise = {(s["method"], s["sparsity"]): s["NDS_spread"] for s in spread}
    pair = [noise.get((a, level)), noise.get((b, level))]
    return max(pair) if None not in pair else _median_spread(spread)


def _median_spread(spread: list) -> float:
    """The NDS noise assumed where a method has one seed: the median spread measured (else half an NDS point)."""
    return float(np.median([s["NDS_spread"] for s in spread])) if spread else NDS_TOLERANCE


def _versus_magnitude(rows: list, spread: list) -> list:
    """Seed means compared (a second seed where a verdict was close would otherwise change only the margin);
    'matches' within the seed noise of the two methods compared (`noise_margin`)."""
    by = seed_means(rows)
    levels = sorted({lv for m, lv in by if m == "magnitude" and lv >= 0.5})
    fallback = _median_spread(spread)
    lines = ["### Every method at >= 50 % vs magnitude pruning (channel, mean over seeds, equal fine-tuning)", "",
             "'matches' = NDS within the seed spread (max - min over seeds) of the method or of magnitude at that "
             f"level, whichever is larger; where either has one seed, the median spread measured ({fallback:.4f}).",
             "", "| level | method | seeds (method / magnitude) | mAP | NDS | mAP - magnitude | NDS - magnitude | "
                 "margin | verdict |", "|---|---|---|---|---|---|---|---|---|"]
    if not levels:
        return lines[:2] + ["Not measured yet: no magnitude variant at >= 50 %.", ""]
    for level in levels:
        mag = by[("magnitude", level)]
        for method in (*MULTIMODAL, *BASELINES):
            r = by.get((method, level))
            if r is None:
                continue
            margin = noise_margin(spread, method, "magnitude", level)
            d_map, d_nds = r["mAP"] - mag["mAP"], r["NDS"] - mag["NDS"]
            verdict = "beats" if d_nds > margin else "matches" if d_nds >= -margin else "worse"
            lines.append(f"| {level:.0%} | {method} | {r['seeds']} / {mag['seeds']} | {r['mAP']:.4f} | {r['NDS']:.4f} "
                         f"| {d_map:+.4f} | {d_nds:+.4f} | {margin:.4f} | {verdict} |")
    return lines + [""]


# AlterMOMA's paper (Sun et al., NeurIPS 2024): nuScenes val, BEVFusion-mit, unstructured; mAP retained of dense 67.8
PAPER_RETAINED = {("altermoma", 0.8): 67.3 / 67.8, ("altermoma", 0.9): 63.5 / 67.8,
                  ("IMP", 0.8): 59.3 / 67.8, ("IMP", 0.9): 42.7 / 67.8}
GRANULARITY_NAMES = {"unstructured": "unstructured", "nm24": "2:4 semi-structured"}


def _other_granularities(table: list) -> list:
    """Unstructured and 2:4 rows (the papers' tables are unstructured): each method against magnitude at the same
    granularity and level, and the share of the dense mAP kept, beside AlterMOMA's paper where it reports one."""
    dense = next((r for r in table if r["method"] == "dense"), None)
    lines = []
    for granularity, title in GRANULARITY_NAMES.items():
        rows = [r for r in table if r["granularity"] == granularity]
        if not rows or dense is None:
            continue
        by = seed_means(rows)
        lines += [f"### {title.capitalize()} (mean over seeds, equal fine-tuning; no speed-up on ONNX Runtime CPU)", "",
                  "| level | method | seeds | mAP | NDS | mAP kept of dense | paper: mAP kept (AlterMOMA / IMP) | "
                  "mAP vs magnitude | NDS - magnitude |", "|---|---|---|---|---|---|---|---|---|"]
        for (method, level), r in sorted(by.items(), key=lambda kv: (kv[0][1], -kv[1]["NDS"])):
            mag = by.get(("magnitude", level))
            paper = PAPER_RETAINED.get((method, level)) if method == "altermoma" else PAPER_RETAINED.get(
                ("IMP", level)) if method == "magnitude" else None
            vs = (f"{(r['mAP'] - mag['mAP']) / mag['mAP']:+.1%} | {r['NDS'] - mag['NDS']:+.4f}"
                  if mag and method != "magnitude" and mag["mAP"] > 0 else "- | -")
            lines.append(f"| {level:.0%} | {method} | {r['seeds']} | {r['mAP']:.4f} | {r['NDS']:.4f} | "
                         f"{r['mAP'] / dense['mAP']:.1%} | {f'{paper:.1%}' if paper else '-'} | {vs} |")
        lines.append("")
    return lines


COSTS = (("gflops", "GFLOPs", "{:.2f}"), ("ort_ms", "CPU ms", "{:.1f}"))


def _equal_cost(table: list) -> list:
    """Each channel variant (seed 0) against magnitude's NDS-vs-cost curve (dense plus magnitude's levels, linear
    between measured points) at the variant's own FLOPs and measured CPU latency. Equal parameters is the sweep's
    axis, but DM3D spends a FLOPs budget and the node switches on latency: a method that loses at equal
    parameters can still sit above magnitude's curve at equal cost."""
    lines = ["### At equal cost: each method vs magnitude's curve (channel, seed 0)", "",
             "Magnitude's NDS at the variant's own GFLOPs and CPU latency, interpolated linearly between dense and "
             "magnitude's measured levels; '-' outside that range.", ""]
    curve = [r for r in table if r["method"] == "dense"] + \
            [r for r in table if r["method"] == "magnitude" and r["granularity"] == "channel" and r["seed"] == 0]
    points = {key: sorted((r[key], r["NDS"]) for r in curve if r.get(key) is not None) for key, _, _ in COSTS}
    if min(len(p) for p in points.values()) < 2:
        return lines[:2] + ["Not measured yet: magnitude needs at least one level besides dense.", ""]
    lines += ["| variant | " + " | ".join(f"{label} | magnitude NDS there | NDS - magnitude" for _, label, _ in COSTS)
              + " |", "|---|" + "---|---|---|" * len(COSTS)]
    others = [r for r in table if r["granularity"] == "channel" and r["seed"] == 0 and r["method"] != "magnitude"]
    for r in sorted(others, key=lambda r: (r["sparsity"], r["method"])):
        cells = []
        for key, _, fmt in COSTS:
            xs, ys = zip(*points[key])
            x = r.get(key)
            if x is None or not xs[0] <= x <= xs[-1]:
                cells.append(f"{fmt.format(x) if x is not None else '-'} | - | -")
                continue
            there = float(np.interp(x, xs, ys))
            cells.append(f"{fmt.format(x)} | {there:.4f} | {r['NDS'] - there:+.4f}")
        lines.append(f"| {r['name']} (NDS {r['NDS']:.4f}) | " + " | ".join(cells) + " |")
    return lines + [""]


def _seeds(spread: list) -> list:
    lines = ["### Fine-tuning noise (seeds 0 and 1)", ""]
    if not spread:
        return lines + ["Not measured yet: no level has two seeds of one method.", ""]
    lines += ["| method | level | seeds | mAP mean | mAP spread | NDS mean | NDS spread |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {s['method']} | {s['sparsity']:.0%} | {s['seeds']} | {s['mAP_mean']:.4f} | {s['mAP_spread']:.4f} | "
              f"{s['NDS_mean']:.4f} | {s['NDS_spread']:.4f} |" for s in spread]
    return lines + [""]


def _speedup(table: list, floor: dict | None) -> list:
    dense = next(r for r in table if r["method"] == "dense")
    lines = ["### A channel-pruned variant >= 3x faster than dense (ONNX Runtime CPU) losing <= 1.0 NDS point", ""]
    if floor is not None:
        ms, dense_ms = floor[str(ORT_CPU_2T)]["median_ms"], floor["dense_ms"]
        lines += [f"Floor: the narrowest channel-pruned network (every prunable conv at 5 % of its channels, "
                  f"{floor['params_m']:.3f} M params, {floor['gflops']:.2f} GFLOPs vs {dense['gflops']:.2f}) runs in "
                  f"{ms:.1f} ms vs {dense_ms:.1f} ms dense, timed side by side: {dense_ms / ms:.2f}x is "
                  "the most channel pruning can gain here.", ""]
        if "ops" in floor:
            lines += _floor_ops(floor["ops"], dense_ms, ms)
    fast = [r for r in table if r["granularity"] == "channel" and r["ort_speedup"] >= 3.0]
    best_speed = max((r for r in table if r["granularity"] == "channel"), key=lambda r: r["ort_speedup"], default=None)
    if not fast:
        if best_speed is None:
            return lines + ["Not measured yet.", ""]
        return lines + [f"Not reached yet: the fastest channel variant measured, {best_speed['name']}, is "
                        f"{best_speed['ort_speedup']:.2f}x dense ({_versus_dense(best_speed)})"
                        f" at NDS {best_speed['NDS']:.4f} ({(best_speed['NDS'] - dense['NDS']) * 100:+.2f} points).",
                        ""]
    best = max(fast, key=lambda r: r["NDS"])
    loss = (dense["NDS"] - best["NDS"]) * 100
    return lines + [f"- {best['name']}: {best['ort_speedup']:.2f}x ({_versus_dense(best)}), "
                    f"NDS {best['NDS']:.4f} vs {dense['NDS']:.4f}: {loss:.2f} points lost "
                    f"({'met' if loss <= 1.0 else 'not met'}; {len(fast)} variants >= 3x)", ""]


def _versus_dense(row: dict) -> str:
    """A variant's time against the dense graph timed beside it (a carried row's dense run may not be the table's)."""
    return f"{row['ort_ms']:.1f} vs {row['ort_ms'] * row['ort_speedup']:.1f} ms dense beside it"


def _floor_ops(ops: dict, dense_ms: float, floor_ms: float) -> list:
    """What holds the floor's time (op_profile of the dense and the narrowest graph): per operator type, the
    slowest nodes, and how much of a 3x budget is left for every prunable conv together (from the side-by-side
    timing of dense and floor, `dense_ms` and `floor_ms`, not the profiled runs: one measurement for both ends)."""
    dense, floor = ops["dense"], ops["floor"]
    kinds = [k for k in dense["by_op_ms"] if max(dense["by_op_ms"][k], floor["by_op_ms"].get(k, 0.0)) >= 0.1]
    kinds += [k for k in floor["by_op_ms"] if k not in kinds and floor["by_op_ms"][k] >= 0.1]
    lines = ["Where the floor's time goes (ONNX Runtime's profiler, the node's session options, ms per run; "
             f"profiled runs: dense {dense['run_ms']:.1f} ms, floor {floor['run_ms']:.1f} ms):", "",
             "| operator | dense ms | floor ms |", "|---|---|---|"]
    lines += [f"| {k} | {dense['by_op_ms'].get(k, 0.0):.2f} | {floor['by_op_ms'].get(k, 0.0):.2f} |" for k in kinds]
    lines.append(f"| all operators (the rest of a run is scheduling between them) | "
                 f"{sum(dense['by_op_ms'].values()):.2f} | {sum(floor['by_op_ms'].values()):.2f} |")
    shape = lambda s: "x".join(map(str, s[1:])) if s else "?"  # noqa: E731
    lines += ["", "The floor's slowest nodes: " + "; ".join(
        f"{n['op']} {shape(n['input_shape'])} -> {shape(n['output_shape'])}"
        + (f" (reads the input `{n['reads']}`)" if n["reads"] else "") + f" {n['ms']:.2f} ms"
        for n in floor["top_nodes"]) + "."]
    if floor["reads_ms"]:
        held = sum(floor["reads_ms"].values())
        lines[-1] += (" The nodes reading a raw input (the first conv of each branch, whose input channels no pruning "
                      "narrows, and layout reorders) take " + ", ".join(f"{ms:.2f} ms on `{k}`" for k, ms in
                                                               floor["reads_ms"].items())
                      + f": {held:.2f} ms, {held / floor['run_ms'] * 100:.0f} % of the floor.")
    budget = dense_ms / 3
    lines += ["", f"A 3x variant has to run in {budget:.1f} ms: {budget - floor_ms:.1f} ms above the floor for all "
                  "prunable convs together.", ""]
    return lines


def _gpu(gpu: dict | None) -> list:
    """The gpu_ms column's source, and the network alone on the GPU when the file has it (variant_latency)."""
    if not gpu:
        return []
    whole = {n: t["fused"]["median_ms"] for n, t in gpu["latency_ms"].items()}
    lines = [f"### On a GPU ({gpu['backend']} on {gpu['device_name']}, measured {gpu['measured']})", "",
             f"gpu_ms is one call as the node makes it (inputs to the GPU, network, outputs back) for the "
             f"{len(whole) - 1} variants finished then, timed side by side with dense ({whole['dense']:.2f} ms); "
             f"speed-ups from {min(whole['dense'] / v for v in whole.values()):.2f}x to "
             f"{max(whole['dense'] / v for v in whole.values()):.2f}x."]
    if "device_ms" in gpu:
        alone = {n: t["fused"]["median_ms"] for n, t in gpu["device_ms"].items()}
        fastest = min(alone, key=alone.get)
        lines[-1] += (f" The network alone (its CUDA graph, CUDA events): dense {alone['dense']:.2f} ms, fastest "
                      f"{fastest} {alone[fastest]:.2f} ms ({alone['dense'] / alone[fastest]:.2f}x); the rest of a "
                      f"call is copying inputs and outputs, the same for every variant.")
    if gpu.get("stale"):
        lines[-1] += (f" Redone since they were timed, so blank in the table: {', '.join(gpu['stale'])}.")
    return lines + [""]


def _carried_gpu(table: list) -> list:
    """Without a GPU timing file: the gpu_ms column as carried from an earlier report, if it has one."""
    timed = {r["name"]: r["gpu_ms"] for r in table if not np.isnan(r.get("gpu_ms", np.nan))}
    if "dense" not in timed or len(timed) < 2:
        return []
    speedups = [timed["dense"] / v for v in timed.values()]
    return ["### On a GPU (carried rows)", "",
            f"gpu_ms for dense ({timed['dense']:.2f} ms) and {len(timed) - 1} variants, timed side by side on a GPU "
            f"in an earlier run (its timing file went with that run's folder; its device and the network-alone "
            f"times are in that run's report): speed-ups from {min(speedups):.2f}x to {max(speedups):.2f}x.", ""]


def _modality_split(rows: list) -> list:
    lines = ["### Where each method prunes (realised sparsity per module, channel, seed 0)", "",
             "| level | method | camera | LiDAR | fusion + BEV |", "|---|---|---|---|---|"]
    by = _seed0(rows)
    for (method, level), r in sorted(by.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        lines.append(f"| {level:.0%} | {method} | {r['camera']:.3f} | {r['lidar']:.3f} | {r['fusion']:.3f} |")
    return lines + [""]


def _reactivation(manifests: list) -> list:
    lines = ["### AlterMOMA's reactivation (scoring, before any pruning)", ""]
    found = False
    for m in sorted(manifests, key=lambda m: m.name):
        re = m.scoring.get("reactivation") if m.method == "altermoma" else None
        if not re or "lidar_channels_camera_masked" not in re:
            continue
        found = True
        for key, what in (("lidar_channels_camera_masked", "LiDAR channels, camera masked"),
                          ("camera_channels_lidar_masked", "camera channels, LiDAR masked")):
            s = re[key]
            big = s["largest"]
            lines.append(f"- {m.name}, {what}: {s['rose_to_top_quarter']} of {s['bottom_half_channels']} "
                         f"bottom-half channels rose into the top quarter ({s['fraction']:.1%}; a random reshuffle: "
                         f"~25 %, no change: 0 %); largest climb {big['unit']} channel {big['channel']}, percentile "
                         f"{big['percentile_before']:.2f} -> {big['percentile_after']:.2f}")
    if not found:
        lines.append("Not measured yet (no AlterMOMA variant scored with the channel statistic).")
    return lines + [""]
