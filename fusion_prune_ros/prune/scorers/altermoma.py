"""AlterMOMA (Sun, Lu, Liu et al., NeurIPS 2024, arXiv 2409.17728; docs/pruning.md, "AlterMOMA"): alternative
modality masking.

Backbones pre-trained per modality learn overlapping features; the fuser uses one copy and leaves the other
fusion-redundant. Masking one modality and briefly training makes the fuser reactivate the redundant copy in the
other branch. The parameters whose loss contribution changes most during this reactivation (ReRI) are the
redundant ones; AlterEva subtracts that change from each parameter's contribution in the dense fused model (DeCI):

    DeCI = |theta0 * g(theta0)|                                       (both modalities on)
    ReRI = |theta0 * g(theta0; m masked) - theta0 * g(theta_B; m masked)|   (theta0 in both products)
    camera: DeCI / sum_camera - ReRI_lidar-masked / sum_camera; LiDAR symmetric;
    fusion: DeCI / sum - ReRI_lidar-masked / (2 sum) - ReRI_camera-masked / (2 sum)

with alpha = beta = 1 and every sum an L1 norm over one module (camera, LiDAR, fusion). The raw AlterEva values
are the scores: they are already normalised per module, and one global threshold over them is what the paper
does. They can be negative (a parameter whose reactivation change exceeds its contribution); higher = keep.

Choices and departures from the paper (docs/pruning.md lists them beside the paper's):
- gB, the gradient at theta_B, is the mean over the calibration batches, not the gradient "on the last batch"
  of the reactivation training. g0 is a calibration mean too, so ReRI then measures only the change of the
  weights, not the sampling noise of one training batch (which would land in ReRI and penalise parameters at
  random).
- DeCI uses the calibration-mean gradient, |theta0 * mean g|, as our Taylor baseline does: AlterMOMA and Taylor
  then differ exactly by the ReRI term.
- Reactivation (not reported by the paper): a deep copy of the model, all parameters trainable, Adam without
  weight decay, lr `reactivation_lr` (1e-4), `reactivation_steps` B (100) steps of batch size 4 drawn from the
  training set with a generator seeded by ctx.seed (the same batches for both stages), train mode, gradient norm
  clipped at 10 as in the project's training loop. Each stage starts from its own copy of theta0.
- The head's shared conv (modality 'head') is scored with the fusion module.
- `normalise="network"` (an ablation, not the paper's setting): every term L1-normalised over all scored weights.
  Per-module normalisation gives each module the same total score whatever its size, so under one global
  threshold a weight's score scales with 1 / its module's size: here the fusion + BEV module holds most of the
  weights and is cut hardest, and at beta = alpha the small LiDAR branch's deviations decide (docs/pruning.md).
- All gradients are taken in eval mode (`weight_gradients`), so BatchNorm uses its running statistics.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Iterator

import torch
from torch import nn

from ..calibration import PruneContext, masked, task_loss
from ..units import prunable_units
from . import register
from .base import CLIP_NORM, Scorer, Scores, sampled_batches, weight_gradients, weights_of

MODULE_OF_MODALITY = {"camera": "camera", "lidar": "lidar", "fusion": "fusion", "head": "fusion"}
TOP_UNITS = 5


def reactivated(model: nn.Module, dataset, masked_modality: str, steps: int, lr: float, batch_size: int,
                seed: int) -> nn.Module:
    """A copy of `model` trained for `steps` steps with `masked_modality` masked: the fuser learns to take from the
    remaining branch what the masked one used to provide, reactivating its fusion-redundant features."""
    for _, work in reactivation_trajectory(model, dataset, masked_modality, (steps,), lr, batch_size, seed):
        pass
    return work


def reactivation_trajectory(model: nn.Module, dataset, masked_modality: str, checkpoints: tuple, lr: float,
                            batch_size: int, seed: int) -> Iterator[tuple]:
    """Train one copy as `reactivated` does and yield (B, the copy in eval mode) after each step count B in
    `checkpoints`: the first B steps of a longer run are a B-step run (the same seeded batch order, a constant
    learning rate), so one run gives theta_B for every B of a B sweep. Training resumes after each yield."""
    work = copy.deepcopy(model).train()
    optimizer = torch.optim.Adam(work.parameters(), lr=lr)
    todo = sorted(set(checkpoints))
    if todo and todo[0] == 0:
        yield 0, work.eval()
        todo.pop(0)
    for step, batch in enumerate(sampled_batches(dataset, todo[-1] if todo else 0, batch_size, seed), start=1):
        work.train()
        loss = task_loss(work, masked(batch, masked_modality))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(work.parameters(), CLIP_NORM)
        optimizer.step()
        if step == todo[0]:
            yield step, work.eval()
            todo.pop(0)


@dataclass
class Stage:
    """One masking stage: the signed contributions theta0 * g before (theta0) and after (theta_B) reactivation."""

    before: dict
    after: dict
    seconds: float

    def reri(self) -> dict:
        return {k: (self.before[k] - self.after[k]).abs() for k in self.before}


def normalised(scores: dict, names: list) -> dict:
    """scores[n] / (sum of scores over the units `names`): the L1 normalisation within one module. A module whose
    term is zero everywhere contributes zero (nothing to rank by)."""
    total = sum(float(scores[n].sum()) for n in names)
    return {n: scores[n] / total if total > 0 else torch.zeros_like(scores[n]) for n in names}


def alter_eva(deci: dict, reri_lidar_masked: dict, reri_camera_masked: dict, modules: dict, alpha: float,
              beta: float, scope: str = "module") -> dict:
    """AlterEva per weight. `modules`: unit name -> 'camera' | 'lidar' | 'fusion'. The camera branch is judged by
    what changes when LiDAR is masked, the LiDAR branch by the camera-masked stage, the fusion units by both.
    `scope`: each term L1-normalised within its module (the paper's choice) or over the whole network ("network"), where
    a weight's score no longer scales with 1 / its module's size."""
    if scope not in ("module", "network"):
        raise ValueError(f"scope must be 'module' or 'network', not {scope!r}")
    members = {m: [n for n, mm in modules.items() if mm == m] for m in ("camera", "lidar", "fusion")}
    out = {}
    for module, names in members.items():
        if not names:
            continue
        over = list(modules) if scope == "network" else names  # the weights each L1 norm sums over
        d = normalised(deci, over)
        r_l = normalised(reri_lidar_masked, over)
        r_c = normalised(reri_camera_masked, over)
        for n in names:
            if module == "camera":
                out[n] = alpha * d[n] - beta * r_l[n]
            elif module == "lidar":
                out[n] = alpha * d[n] - beta * r_c[n]
            else:
                out[n] = alpha * d[n] - beta / 2 * r_l[n] - beta / 2 * r_c[n]
    return out


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


class AlterMOMAScorer(Scorer):
    """AlterEva scores from alternative modality masking; see the module docstring."""

    name = "altermoma"

    def __init__(self, reactivation_steps: int = 100, reactivation_lr: float = 1e-4, alpha: float = 1.0,
                 beta: float = 1.0, batch_size: int = 4, normalise: str = "module"):
        if normalise not in ("module", "network"):
            raise ValueError(f"normalise must be 'module' or 'network', not {normalise!r}")
        self.steps, self.lr = reactivation_steps, reactivation_lr
        self.alpha, self.beta, self.batch_size, self.normalise = alpha, beta, batch_size, normalise

    def __call__(self, ctx: PruneContext, sparsity: float, granularity: str) -> Scores:
        start = time.perf_counter()
        dense = copy.deepcopy(ctx.model).eval()
        theta0 = weights_of(dense)
        grads = weight_gradients(dense, ctx.calibration)
        deci = {k: (w * grads[k]).abs() for k, w in theta0.items()}
        deci_seconds = time.perf_counter() - start
        lidar_masked = self._stage(dense, ctx, "lidar", theta0)
        camera_masked = self._stage(dense, ctx, "camera", theta0)
        modules = {u.name: MODULE_OF_MODALITY[u.modality] for u in prunable_units(dense)}
        weights = alter_eva(deci, lidar_masked.reri(), camera_masked.reri(), modules, self.alpha, self.beta,
                            self.normalise)
        names = {m: [n for n, mm in modules.items() if mm == m] for m in ("camera", "lidar", "fusion")}
        units = {m: [u for u in prunable_units(dense) if u.modality == m] for m in ("camera", "lidar")}
        info = {
            "reactivation_steps": self.steps, "reactivation_lr": self.lr, "reactivation_batch": self.batch_size,
            "alpha": self.alpha, "beta": self.beta, "normalise": self.normalise,
            "gB": "mean over the calibration batches",
            "seconds": {"deci": round(deci_seconds, 2), "lidar_masked": round(lidar_masked.seconds, 2),
                        "camera_masked": round(camera_masked.seconds, 2),
                        "total": round(time.perf_counter() - start, 2)},
            "alter_eva": eva_stats(deci, lidar_masked.reri(), camera_masked.reri(), weights, modules),
            "reactivation": {
                # ranking by mean |theta0 g|: dense fused model vs reactivated model with the other modality masked
                "rank_changed": {
                    "camera": rank_changed(deci, lidar_masked.after, names["camera"]),
                    "lidar": rank_changed(deci, camera_masked.after, names["lidar"]),
                    "fusion_lidar_masked": rank_changed(deci, lidar_masked.after, names["fusion"]),
                    "fusion_camera_masked": rank_changed(deci, camera_masked.after, names["fusion"])},
                "lidar_channels_camera_masked": channels_reactivated(deci, camera_masked, units["lidar"]),
                "camera_channels_lidar_masked": channels_reactivated(deci, lidar_masked, units["camera"]),
                "top_lidar_units_camera_masked": top_reactivated(deci, camera_masked, names["lidar"]),
                "top_camera_units_lidar_masked": top_reactivated(deci, lidar_masked, names["camera"])},
        }
        return Scores(weights=weights, info=info)

    def _stage(self, dense: nn.Module, ctx: PruneContext, modality: str, theta0: dict) -> Stage:
        """Mask `modality`, take theta0 * g before and after reactivation (theta0 in both products)."""
        start = time.perf_counter()
        g0 = weight_gradients(dense, ctx.calibration, modality)
        trained = reactivated(dense, ctx.train_set, modality, self.steps, self.lr, self.batch_size, ctx.seed)
        g_b = weight_gradients(trained, ctx.calibration, modality)
        before = {k: w * g0[k] for k, w in theta0.items()}
        after = {k: w * g_b[k] for k, w in theta0.items()}
        return Stage(before, after, time.perf_counter() - start)


register("altermoma", AlterMOMAScorer)
