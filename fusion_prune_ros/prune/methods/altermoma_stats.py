"""What AlterMOMA's importance measured, for the variant manifest and the B sweep (docs/pruning.md, "AlterMOMA"):
how rankings change under reactivation, which channels rise, and how AlterEva's two terms relate."""
from __future__ import annotations

import torch
from torch import nn

from .alter_eva import Stage

TOP_UNITS = 5


def rank_changed(first: dict, second: dict, names: list) -> float:
    """Fraction of the units `names` whose position in the ranking by mean |score| differs between two scorings."""
    if not names:
        return 0.0

    def order(scores: dict) -> list:
        return sorted(names, key=lambda n: float(scores[n].abs().mean()), reverse=True)

    a, b = order(first), order(second)
    return sum(x != y for x, y in zip(a, b)) / len(names)


def top_reactivated(deci: dict, stage: Stage, names: list, k: int = TOP_UNITS) -> list:
    """The k units of `names` whose mean |theta0 * g| grew most from the dense fused model (DeCI) to the
    reactivated model with the other modality masked: the units the fuser turns to when that modality is gone."""
    rows = [{"unit": n, "deci": float(deci[n].mean()), "masked_before": float(stage.before[n].abs().mean()),
             "masked_after": float(stage.after[n].abs().mean())} for n in names]
    for r in rows:
        r["increase"] = r["masked_after"] - r["deci"]
    return sorted(rows, key=lambda r: r["increase"], reverse=True)[:k]


def channel_importance(scores: dict, units: list) -> dict:
    """Mean |score| per output channel of each unit (Conv2d weights are out x in x k x k, ConvTranspose2d
    in x out x k x k)."""
    out = {}
    for u in units:
        dim = 1 if isinstance(u.module, nn.ConvTranspose2d) else 0
        s = scores[u.name].abs().transpose(0, dim)
        out[u.name] = s.reshape(s.shape[0], -1).mean(1)
    return out


def channels_reactivated(deci: dict, stage: Stage, units: list) -> dict:
    """Channel-level reactivation (the paper's observation): of the channels in the bottom half of their unit by
    DeCI (unimportant with both modalities on), how many rise into the top quarter of their unit by |theta0 * g|
    after reactivation with the other modality masked. A random reshuffle would lift about a quarter of them; no
    change of importance, none. `largest` names the channel that climbed most (percentiles within its unit)."""
    before, after = channel_importance(deci, units), channel_importance(stage.after, units)
    low, lifted, best = 0, 0, None
    for u in units:
        n = len(before[u.name])
        pb = before[u.name].argsort().argsort().float() / max(n - 1, 1)
        pa = after[u.name].argsort().argsort().float() / max(n - 1, 1)
        bottom = pb < 0.5
        low += int(bottom.sum())
        lifted += int((bottom & (pa >= 0.75)).sum())
        climb = torch.where(bottom, pa - pb, torch.full_like(pa, -1.0))
        i = int(climb.argmax())
        if bottom.any() and (best is None or float(climb[i]) > best["climb"]):
            best = {"unit": u.name, "channel": i, "percentile_before": round(float(pb[i]), 3),
                    "percentile_after": round(float(pa[i]), 3), "climb": round(float(climb[i]), 3)}
    return {"bottom_half_channels": low, "rose_to_top_quarter": lifted,
            "fraction": round(lifted / low, 4) if low else 0.0, "largest": best}


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Rank correlation of two flat score vectors (ties broken by position: scores here are continuous)."""
    ra = a.double().argsort().argsort().double()
    rb = b.double().argsort().argsort().double()
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra * rb).sum() / (ra.norm() * rb.norm()))


def eva_stats(deci: dict, reri_lidar_masked: dict, reri_camera_masked: dict, eva: dict, modules: dict) -> dict:
    """Per module: how the two terms of AlterEva relate. If ReRI ranks weights like DeCI does (Spearman near 1),
    the difference of the two normalised terms ranks by little more than noise; the share of negative AlterEva
    says how much of the module the subtraction marks as redundant."""
    out = {}
    for module in ("camera", "lidar", "fusion"):
        names = [n for n, m in modules.items() if m == module]
        if not names:
            continue
        flat = lambda d: torch.cat([d[n].flatten() for n in names])  # noqa: E731
        reri = {"camera": reri_lidar_masked, "lidar": reri_camera_masked}.get(module)
        r = flat(reri) if reri is not None else (flat(reri_lidar_masked) + flat(reri_camera_masked)) / 2
        e = flat(eva)
        out[module] = {"params": int(e.numel()), "spearman_deci_reri": round(spearman(flat(deci), r), 4),
                       "negative_fraction": round(float((e < 0).float().mean()), 4)}
    return out
