"""What the multimodal methods are for, checked against the sweep's rows (written under the results table).

- **The gain over magnitude pruning at high channel sparsity**: the best multimodal method's seed-mean mAP against
  magnitude's, relative (targets: +10 % at 80 %, +25 % at 90 %), and only where the difference is larger than the
  seed noise of the two, the larger mAP spread (max - min over seeds) at that level.
- **Each paper's own qualitative claim**:
  - AlterMOMA (Sun et al., NeurIPS 2024): its alternating masking and reactivation find the redundancy a plain
    importance criterion misjudges in a fusion model, so it prunes better than first-order Taylor importance, the
    criterion its scores are built from, applied to the fusion model as to a single-modal one;
  - DM3D (Xu et al., 2024): its layer-adaptive allocation beats a uniform one at equal FLOPs. Read from
    `fusion-prune allocation-ablation` (`ABLATION_FILE` under the sweep folder), which scores both allocations
    with the same ranking before fine-tuning;
  - CrossPrune: its advantage over magnitude pruning grows with the sparsity;
  - MMPrune4U (BMVC 2024): the pruning ratios it allocates differ between the camera and the LiDAR branch.

Nothing is asserted: each check says what the rows show, and a claim without rows to judge it says so.
"""
from __future__ import annotations

import json
from pathlib import Path

from .findings import MULTIMODAL, noise_margin, seed_means, seed_spread

GAIN_TARGETS = {0.8: 0.10, 0.9: 0.25}  # level -> relative mAP over magnitude the best multimodal method should reach
ABLATION_FILE = Path("allocation_ablation") / "allocation_ablation.json"  # under the sweep folder
MODALITY_GAP = 0.05  # camera and LiDAR sparsities closer than this count as one ratio


def read_ablation(out_root: str | Path) -> dict | None:
    """The allocation ablation's result (analysis/allocation_ablation.py) run into the sweep folder, if any."""
    path = Path(out_root) / ABLATION_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def method_claims(channel: list, ablation: dict | None = None) -> list:
    """Markdown lines for the channel rows (`ResultRow`s of every method and seed) and the ablation result."""
    means, spread = seed_means(channel), seed_spread(channel)
    return (multimodal_gain(means, spread) + ["### Each paper's claim, re-checked on this detector", ""]
            + altermoma_vs_taylor(means, spread) + dm3d_allocation(ablation) + crossprune_trend(means)
            + mmprune4u_ratios(channel))


def multimodal_gain(means: dict, spread: list) -> list:
    lines = ["### At 80 and 90 %: the best multimodal method vs magnitude (relative mAP, seed means)", ""]
    maps = {(s["method"], s["sparsity"]): s["mAP_spread"] for s in spread}
    found = False
    for level, target in GAIN_TARGETS.items():
        mag = means.get(("magnitude", level))
        rs = [(m, means[(m, level)]) for m in MULTIMODAL if (m, level) in means]
        if mag is None or not rs:
            continue
        found = True
        method, best = max(rs, key=lambda mr: mr[1]["mAP"])
        gain = (best["mAP"] - mag["mAP"]) / mag["mAP"] if mag["mAP"] > 0 else float("nan")
        noise = [maps.get((method, level)), maps.get(("magnitude", level))]
        if None in noise:
            beyond = "seed spread not measured yet (one seed of either)"
            verdict = "met on one seed" if gain >= target else "not met"
        else:
            beyond = f"difference {best['mAP'] - mag['mAP']:+.4f} vs seed spread {max(noise):.4f}"
            verdict = "met" if gain >= target and best["mAP"] - mag["mAP"] > max(noise) else "not met"
        lines.append(f"- {level:.0%}: best {method} mAP {best['mAP']:.4f} vs magnitude {mag['mAP']:.4f} (seeds "
                     f"{best['seeds']} / {mag['seeds']}): {gain:+.1%} relative, target {target:+.0%} ({verdict}; "
                     f"{beyond}; {len(rs)} of {len(MULTIMODAL)} methods measured)")
    return _ended(lines, found, "Not measured yet.")


def altermoma_vs_taylor(means: dict, spread: list) -> list:
    lines = ["**AlterMOMA above first-order Taylor importance** (channel, seed means; NDS margin as in the table "
             "above):", ""]
    levels = sorted(lv for m, lv in means if m == "altermoma" and ("taylor", lv) in means)
    for level in levels:
        a, t = means[("altermoma", level)], means[("taylor", level)]
        margin = noise_margin(spread, "altermoma", "taylor", level)
        d = a["NDS"] - t["NDS"]
        verdict = "holds" if d > margin else "within the noise" if d >= -margin else "does not hold"
        lines.append(f"- {level:.0%}: NDS {a['NDS']:.4f} vs {t['NDS']:.4f} ({d:+.4f}, margin {margin:.4f}), mAP "
                     f"{a['mAP']:.4f} vs {t['mAP']:.4f}: {verdict}")
    return _ended(lines, levels, "- Not measured yet (no level with both methods).")


def dm3d_allocation(ablation: dict | None) -> list:
    lines = ["**DM3D's DP allocation above a uniform one at equal FLOPs** (`fusion-prune allocation-ablation`, "
             "before fine-tuning, fused NDS):", ""]
    if ablation is None:
        return lines + [f"- Not measured yet (no {ABLATION_FILE.as_posix()} in the sweep folder).", ""]
    by = {(r["sparsity"], r["allocation"]): r for r in ablation["rows"]}
    for level in sorted({s for s, _ in by}):
        u, dp = by.get((level, "uniform")), by.get((level, "dp"))
        if u is None or dp is None:
            continue
        nu, nd = u["metrics"]["fused"]["NDS"], dp["metrics"]["fused"]["NDS"]
        verdict = ("no verdict: both collapse" if nu == nd == 0 else "holds" if nd > nu else "does not hold")
        lines.append(f"- {level:.0%} (FLOPs kept {u['flops_kept']:.3f} / {dp['flops_kept']:.3f}): DP NDS {nd:.4f} vs "
                     f"uniform {nu:.4f}: {verdict}")
    return lines + [""]


def crossprune_trend(means: dict) -> list:
    lines = ["**CrossPrune's gain over magnitude growing with sparsity** (channel, relative mAP, seed means):", ""]
    levels = sorted(lv for m, lv in means if m == "crossprune" and ("magnitude", lv) in means)
    gains = [(lv, (means[("crossprune", lv)]["mAP"] - means[("magnitude", lv)]["mAP"])
              / means[("magnitude", lv)]["mAP"]) for lv in levels if means[("magnitude", lv)]["mAP"] > 0]
    if len(gains) < 2:
        return lines + ["- Not measured yet (fewer than two levels with both methods).", ""]
    growing = all(b > a for (_, a), (_, b) in zip(gains, gains[1:]))
    breaks = [f"{hi:.0%}" for (_, a), (hi, b) in zip(gains, gains[1:]) if b <= a]
    lines.append("- " + ", ".join(f"{lv:.0%}: {g:+.1%}" for lv, g in gains) + ": "
                 + ("holds" if growing else f"does not hold (no larger gain at {', '.join(breaks)})"))
    return lines + [""]


def mmprune4u_ratios(channel: list) -> list:
    lines = ["**MMPrune4U's ratios differing per modality** (channel, seed 0, realised sparsity of each branch; "
             f"a gap under {MODALITY_GAP:.2f} counts as one ratio):", ""]
    rows = sorted((r for r in channel if r["method"] == "mmprune4u" and r["seed"] == 0), key=lambda r: r["sparsity"])
    for r in rows:
        gap = r["camera"] - r["lidar"]
        lines.append(f"- {r['sparsity']:.0%}: camera {r['camera']:.3f}, LiDAR {r['lidar']:.3f}, fusion + BEV "
                     f"{r['fusion']:.3f}: {'holds' if abs(gap) >= MODALITY_GAP else 'does not hold'} "
                     f"(camera - LiDAR {gap:+.3f})")
    return _ended(lines, rows, "- Not measured yet.")


def _ended(lines: list, measured, missing: str) -> list:
    """A section's lines, the `missing` line where nothing was measured, and the blank line that ends it."""
    return lines + ([] if measured else [missing]) + [""]
