"""CrossPrune-style (Lu, Jiang, Liu et al., Knowledge-Based Systems 289, 2024): reconstructed from the abstract and
the group's earlier ADMM pruning line (docs/pruning.md, "CrossPrune-style"), hence "-style". The method is a
weight update (ADMM) and magnitude importance of the updated weights under one global threshold; its channel
mask is the last projection's. The feature distortion as a fine-tuning loss (feature_distortion.py) is the
separate method `crossprune-distil`: every method fine-tunes with the same loss by default.

Both branches extract some of the same information, so pruning treats them cooperatively and restricts the
feature distortion it causes. We solve

    min_W  L_task(W) + gamma * D_feat(W)   subject to W in the sparsity set S,
    D_feat = sum over {camera BEV, LiDAR BEV, fused BEV} of ||F(x; W) - F(x; W0)||^2 / ||F(x; W0)||^2

against the frozen dense model W0 (the maps are the fuser's two inputs and its output) with ADMM: auxiliary Z and
scaled dual U per unit; W-step = `steps_per_round` Adam steps on L_task + gamma D_feat + rho/2 ||W - Z + U||^2;
Z-step = the projection of W + U onto S; U += W - Z; rho grows geometrically from 1e-4 to 1e-1 over
`admm_rounds` rounds. The update returns W_final (the variant starts from the ADMM-trained weights) and the scores
are |W_final| (unstructured and 2:4: the framework's mask then follows Z once W has converged to it). Under
`channel` the pruned channels are exactly those the last Z zeroes: the network is cut by the last projection's
ranking (`ProjectionImportance`), not by a new ranking of |W_final|. With `distil` (`crossprune-distil`)
gamma * D_feat stays on as the fine-tuning loss.

The projection at each granularity:
- unstructured: one joint top-k of |W + U| over all prunable units, camera, LiDAR, fusion and head together: the
  cooperative allocation, where the branches compete for one budget; `info['z_sparsity']` reports where it fell.
- channel: the framework's channel selection (`granularity.channel_selection`) on |W + U|: dependency groups
  ranked globally by their channels' mean |W + U|, the share bisected to the parameter target, widths rounded
  as the variant's (ctx.round_to); Z zeroes every weight the removal of those channels deletes. The sparsity
  set is then the set of networks the channel granularity can produce, and the final channel pruning, ranking
  by the same |W + U|, removes exactly the channels the last Z zeroes.
- nm24: 2 of every 4 input-channel weights by |W + U| (`granularity.nm24_masks`), in every unit.

Departures and choices (for the paper-vs-ours table; the abstract is silent on all of them):
- Joint projection over camera, LiDAR *and* fusion units (the abstract: camera and LiDAR) for unstructured and
  channel; 2:4 projections are per unit.
- W-step: 30 Adam steps per round (rather than a few epochs), 6 rounds, so the cost stays bounded; lr 1e-3
  without weight decay (the usual ADMM-pruning setting: the weights must reach Z within those steps); batch size 4
  from the training set with a generator seeded by ctx.seed; gradient norm clipped at 10 as in train.fit.
- When rho grows, the scaled dual U = y / rho is rescaled by rho_old / rho_new (Boyd et al. 2011, section 3.4.1).
- Only the prunable weights train (biases and BatchNorm stay at W0, so the returned state reproduces the ADMM
  model exactly), with BatchNorm in eval mode: D_feat is then exactly 0 at W0 and measures only weight changes.
- gamma = 1. Fine-tuning with D_feat (the paper's) is `crossprune-distil`: the default keeps the fine-tuning
  every method gets (the same steps, learning rate, data and loss), so that the rows compare the methods'
  pruning, not a distillation term only one of them has. With it, the student trains in train mode against the
  eval-mode teacher, so D_feat there has a small floor from BatchNorm's batch statistics.
- A channel-pruned student's maps have fewer channels than the teacher's: D_feat compares each student channel
  with the teacher channel it came from (`FeatureDistortionLoss.bind`, before fine-tuning starts).
"""
from __future__ import annotations

import copy
import math

import numpy as np
import torch
from torch import nn

from ...model.flops import example_inputs
from ...model.losses import detection_loss
from ..calibration import PruneContext, outputs
from ..granularity import GRANULARITIES, channel_selection, nm24_masks
from ..importance import Importance, Scores
from ..method import EXTRA_OPTIMISER_STEPS, Method
from ..regularisation import Updated, WeightUpdate
from ..target import Target
from ..training_batches import CLIP_NORM, sampled_batches
from ..units import prunable_units, weights_of
from .feature_distortion import FeatureDistortion, FeatureDistortionLoss

PROJECTION = {"unstructured": "joint top-k over camera, lidar, fusion and head",
              "channel": "the channel granularity's selection by mean |W + U|", "nm24": "2:4 per unit"}


def crossprune(admm_rounds: int = 6, steps_per_round: int = 30, rho_start: float = 1e-4, rho_end: float = 1e-1,
               gamma: float = 1.0, lr: float = 1e-3, batch_size: int = 4, distil: bool = False) -> Method:
    """ADMM, then |W| of the updated weights under one global threshold (under `channel`, the last projection's
    channels); with `distil`, fine-tuning with gamma * D_feat."""
    update = ADMMUpdate(admm_rounds, steps_per_round, rho_start, rho_end, gamma, lr, batch_size)
    return Method(ProjectionImportance(update), update=update, loss=FeatureDistortionLoss(gamma) if distil else None)


def crossprune_distil(admm_rounds: int = 6, steps_per_round: int = 30, rho_start: float = 1e-4,
                      rho_end: float = 1e-1, gamma: float = 1.0, lr: float = 1e-3, batch_size: int = 4) -> Method:
    """`crossprune` fine-tuned with its feature distortion term, as the paper fine-tunes."""
    return crossprune(admm_rounds, steps_per_round, rho_start, rho_end, gamma, lr, batch_size, distil=True)


class ProjectionImportance(Importance):
    """|W| of the updated weights; under `channel`, channels ranked by |W + U| of the update's last projection
    (`ADMMUpdate.projected`), so that the channel granularity removes the channels that projection zeroed."""

    def __init__(self, update: "ADMMUpdate"):
        self.update = update

    def __call__(self, ctx: PruneContext) -> Scores:
        return Scores({n: w.abs() for n, w in weights_of(ctx.model).items()}, channel_weights=self.update.projected)


class ADMMUpdate(WeightUpdate):
    """ADMM towards the sparsity set under the task loss plus the feature-distortion restriction, with the options
    of `crossprune`; see the module docstring."""

    def __init__(self, admm_rounds: int, steps_per_round: int, rho_start: float, rho_end: float, gamma: float,
                 lr: float, batch_size: int):
        self.rounds, self.steps = admm_rounds, steps_per_round
        self.rhos = rho_schedule(rho_start, rho_end, admm_rounds)
        self.gamma, self.lr, self.batch_size = gamma, lr, batch_size
        self.projected = None  # under channel: |W + U| of the last projection, unit name -> tensor

    def __call__(self, ctx: PruneContext, target: Target, granularity: str) -> Updated:
        if granularity not in GRANULARITIES:
            raise ValueError(f"unknown granularity {granularity!r}")
        sparsity = target.fraction
        distortion = FeatureDistortion(ctx.model, self.gamma)
        model = copy.deepcopy(ctx.model).eval().requires_grad_(False)
        units = prunable_units(model)
        w = {u.name: u.weight.requires_grad_(True) for u in units}
        u_dual = {k: torch.zeros_like(x) for k, x in w.items()}
        inputs = example_inputs(ctx.cfg)["fused"] if granularity == "channel" else None  # the dependency graph's
        project = Projection(model, sparsity, granularity, inputs, ctx.round_to)
        z = project(weights_of(model))
        optimizer = torch.optim.Adam(list(w.values()), lr=self.lr)
        batches = sampled_batches(ctx.train_set, self.rounds * self.steps, self.batch_size, ctx.seed)
        residuals, last = [relative_residual(weights_of(model), z)], {}  # [0]: before the first W-step
        for rho, next_rho in zip(self.rhos, self.rhos[1:] + self.rhos[-1:]):
            for _ in range(self.steps):
                last = self._w_step(model, next(batches), distortion, optimizer, w, z, u_dual, rho)
            current = weights_of(model)
            z = project({k: x + u_dual[k] for k, x in current.items()})
            # scaled dual U = y / rho: rescaled when rho changes (Boyd et al. 2011, 3.4.1)
            u_dual = {k: (u_dual[k] + x - z[k]) * (rho / next_rho) for k, x in current.items()}
            residuals.append(relative_residual(current, z))
        info = {"gamma": self.gamma, "rho": self.rhos, "admm_rounds": self.rounds,
                "steps_per_round": self.steps, "lr": self.lr, "batch": self.batch_size,
                "projection": PROJECTION[granularity], "residual_per_round": [round(r, 5) for r in residuals],
                "final_residual": round(residuals[-1], 5), "z_sparsity": zero_fraction(z, units),
                "last_losses": last, EXTRA_OPTIMISER_STEPS: self.rounds * self.steps}
        self.projected = project.last if granularity == "channel" else None
        return Updated(weights_of(model), info)

    def _w_step(self, model: nn.Module, batch: dict, distortion: FeatureDistortion, optimizer, w: dict, z: dict,
                u_dual: dict, rho: float) -> dict:
        """One optimiser step on L_task + gamma D_feat + rho/2 ||W - Z + U||^2."""
        heat, reg = outputs(model, batch)
        task = detection_loss(heat, reg, batch)[0]
        feat = distortion(model, batch, (heat, reg))
        penalty = sum(((x - z[k] + u_dual[k]) ** 2).sum() for k, x in w.items())
        loss = task + feat + rho / 2 * penalty
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(w.values()), CLIP_NORM)
        optimizer.step()
        return {k: round(float(v.detach()), 5) for k, v in (("task", task), ("feature", feat), ("penalty", penalty))}


def rho_schedule(start: float, end: float, rounds: int) -> list:
    return [float(r) for r in np.geomspace(start, end, rounds)]


def project_unstructured(v: dict, sparsity: float) -> dict:
    """Keep the largest-magnitude (1 - sparsity) of all entries of all units jointly (exactly, ties by index)."""
    flat = torch.cat([x.flatten() for x in v.values()])
    keep = torch.zeros(flat.numel(), dtype=torch.bool)
    keep[flat.abs().topk(int(round((1 - sparsity) * flat.numel()))).indices] = True
    out, offset = {}, 0
    for k, x in v.items():
        out[k] = x * keep[offset:offset + x.numel()].view(x.shape)
        offset += x.numel()
    return out


class Projection:
    """The Euclidean projection onto the sparsity set of one granularity (approximate for channels), as a callable
    on unit name -> tensor. Under `channel` it keeps the scores it ranked last (`last`, |W + U|)."""

    def __init__(self, model: nn.Module, sparsity: float, granularity: str, inputs: tuple, round_to: int | None):
        self.model, self.sparsity, self.granularity = model, sparsity, granularity
        self.inputs, self.round_to = inputs, round_to
        self.last = None

    def __call__(self, v: dict) -> dict:
        if self.granularity == "unstructured":
            return project_unstructured(v, self.sparsity)
        scores = Scores({k: x.detach().abs() for k, x in v.items()})
        if self.granularity == "channel":
            self.last = scores.weights
            kept = channel_selection(self.model, scores, self.sparsity, self.inputs, self.round_to)
            return {k: x * kept[k] for k, x in v.items()}
        masks = nm24_masks(self.model, scores)
        return {k: x * masks[k] for k, x in v.items()}


def zero_fraction(z: dict, units: list) -> dict:
    """modality -> fraction of its prunable weights that Z sets to zero (where the joint projection took them)."""
    counts = {}
    for u in units:
        zeros, total = counts.get(u.modality, (0, 0))
        counts[u.modality] = (zeros + int((z[u.name] == 0).sum()), total + z[u.name].numel())
    return {m: round(zeros / total, 4) for m, (zeros, total) in counts.items()}


def relative_residual(w: dict, z: dict) -> float:
    """||W - Z|| / ||W|| over all units."""
    num = sum(float(((w[k] - z[k]) ** 2).sum()) for k in w)
    den = sum(float((w[k] ** 2).sum()) for k in w)
    return math.sqrt(num / den) if den > 0 else 0.0
