"""CrossPrune-style (Lu, Jiang, Liu et al., Knowledge-Based Systems 289, 2024): reconstructed from the abstract and
the group's earlier ADMM pruning line (docs/pruning.md, "CrossPrune-style"), hence "-style".

Both branches extract some of the same information, so pruning treats them cooperatively and restricts the
feature distortion it causes. We solve

    min_W  L_task(W) + gamma * D_feat(W)   subject to W in the sparsity set S,
    D_feat = sum over {camera BEV, LiDAR BEV, fused BEV} of ||F(x; W) - F(x; W0)||^2 / ||F(x; W0)||^2

against the frozen dense model W0 (the maps are the fuser's two inputs and its output) with ADMM: auxiliary Z and
scaled dual U per unit; W-step = `steps_per_round` Adam steps on L_task + gamma D_feat + rho/2 ||W - Z + U||^2;
Z-step = the projection of W + U onto S; U += W - Z; rho grows geometrically from 1e-4 to 1e-1 over
`admm_rounds` rounds. The scores are |W_final| (the framework's mask then follows Z once W has converged to it),
the state is W_final (the variant starts from the ADMM-trained weights), and gamma * D_feat stays on as the
fine-tuning regulariser.

The projection at each granularity:
- unstructured: one joint top-k of |W + U| over all prunable units, camera, LiDAR, fusion and head together: the
  cooperative allocation, where the branches compete for one budget; `info['z_sparsity']` reports where it fell.
- channel: per unit, the output channels with the largest L2 norm of W + U, a fraction sqrt(1 - sparsity) of
  them rounded up (a conv's parameters scale with in x out channels). An approximation: the framework's channel
  pruning then ranks channel groups globally by mean |W_final| along the dependency graph.
- nm24: 2 of every 4 input-channel weights by |W + U| (`granularity.nm24_masks`), in every unit.

Departures and choices (for the paper-vs-ours table; the abstract is silent on all of them):
- Joint projection over camera, LiDAR *and* fusion units (the abstract: camera and LiDAR) for unstructured only;
  channel and 2:4 projections are per unit.
- W-step: 30 Adam steps per round (rather than a few epochs), 6 rounds, so the cost stays bounded; lr 1e-3
  without weight decay (the usual ADMM-pruning setting: the weights must reach Z within those steps); batch size 4
  from the training set with a generator seeded by ctx.seed; gradient norm clipped at 10 as in train.fit.
- When rho grows, the scaled dual U = y / rho is rescaled by rho_old / rho_new (Boyd et al. 2011, section 3.4.1).
- Only the prunable weights train (biases and BatchNorm stay at W0, so the returned state reproduces the ADMM
  model exactly), with BatchNorm in eval mode: D_feat is then exactly 0 at W0 and measures only weight changes.
- gamma = 1. During fine-tuning the student trains in train mode against the eval-mode teacher, so D_feat there
  has a small floor from BatchNorm's batch statistics.
- A channel-pruned student's maps have fewer channels than the teacher's: D_feat compares each student channel
  with the teacher channel it came from (`FeatureDistortion.bind`, before fine-tuning starts).
"""
from __future__ import annotations

import copy
import math
import time
import weakref

import numpy as np
import torch
from torch import nn

from ...model.losses import detection_loss
from ..calibration import PruneContext, outputs
from ..granularity import GRANULARITIES, nm24_masks
from ..units import Unit, prunable_units
from . import register
from .base import CLIP_NORM, Scorer, Scores, sampled_batches, weights_of

EPS = 1e-12
# The BatchNorm that ends each of fuser_features' maps (LiDAR BEV, camera BEV, fused BEV): its per-channel
# parameters identify which teacher channels a channel-pruned student kept.
FEATURE_NORMS = ("lidar.out.1", "camera.reduce.1", "fuser.conv.1")
PROJECTION = {"unstructured": "joint top-k over camera, lidar, fusion and head",
              "channel": "per unit: output channels by L2 norm", "nm24": "2:4 per unit"}


def fuser_features(model: nn.Module, batch: dict) -> tuple:
    """(LiDAR BEV, camera BEV, fused BEV) of one forward: the fuser's two inputs (after presence masking) and its
    output."""
    captured = []
    handle = model.fuser.register_forward_hook(lambda m, args, out: captured.append((args[0], args[1], out)))
    try:
        outputs(model, batch)
    finally:
        handle.remove()
    return captured[-1]


def distortion(student: tuple, teacher: tuple, channels: tuple | None = None) -> torch.Tensor:
    """D_feat: the relative squared error of each feature map, summed. A map that is zero in the teacher (a masked
    modality) contributes only if the student's is not. `channels`: per map, the teacher channels the student's
    channels correspond to (a channel-pruned student), or None for all of them in order."""
    if channels is not None:
        teacher = tuple(t[:, idx] for t, idx in zip(teacher, channels))
    return sum(((s.float() - t.float()) ** 2).sum() / (t.float() ** 2).sum().clamp(min=EPS)
               for s, t in zip(student, teacher))


def kept_channels(teacher_norm: nn.BatchNorm2d, student_norm: nn.BatchNorm2d) -> torch.Tensor:
    """For each channel of a channel-pruned copy's BatchNorm, the index of the original channel it was cut from.

    Torch-Pruning slices a BatchNorm's four per-channel parameters without changing them, so until the copy
    trains, each of its channels matches exactly one original channel (four trained floats). The sliced order is
    the original order. A channel without a match means the copy has already changed: an error, not a guess."""
    def rows(bn):
        return torch.stack([bn.weight.detach(), bn.bias.detach(), bn.running_mean, bn.running_var], 1)

    t, s = rows(teacher_norm), rows(student_norm)
    index, start = [], 0
    for i, row in enumerate(s):
        hits = torch.nonzero((t[start:] == row).all(1)).flatten()
        if len(hits) == 0:
            raise ValueError(f"student channel {i} matches no teacher channel: bind before fine-tuning")
        index.append(start + int(hits[0]))
        start = index[-1] + 1
    return torch.tensor(index)


class _NextForward:
    """Captures the fuser features of the model's next forward, then removes its own hooks.

    The training loop calls the regulariser right after the forward that produced the loss: capturing that
    forward's features saves a second forward and backward through the student per step. The hooks are one-shot
    (re-armed by each regulariser call), so after fine-tuning the next forward (evaluation) removes them and the
    saved or exported model carries none. The forward's first input identifies it: features of another forward
    are never used."""

    def __init__(self, model: nn.Module):
        self.key, self.features = None, None
        self.handles = [model.register_forward_pre_hook(self._start), model.fuser.register_forward_hook(self._end)]

    def _start(self, module, args) -> None:
        self.key = args[0] if args else None

    def _end(self, module, args, output) -> None:
        if torch.is_grad_enabled():
            self.features = (args[0], args[1], output)
        self.remove()

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()

    def take(self, key: torch.Tensor) -> tuple | None:
        self.remove()
        return self.features if self.features is not None and self.key is key else None


class FeatureDistortion:
    """gamma * D_feat against a frozen copy of the dense model: a `FitHooks.regulariser` (model, batch, outputs)."""

    def __init__(self, dense: nn.Module, gamma: float):
        self.teacher = copy.deepcopy(dense).eval().requires_grad_(False)
        self.gamma = gamma
        self._armed = weakref.WeakKeyDictionary()
        self.channels = None  # per map, the teacher channels of a channel-pruned student (bind)

    def bind(self, student: nn.Module) -> None:
        """Fix which teacher channels the student's maps compare with; called on the network to fine-tune before
        it trains. For an unpruned or masked student (same widths) this is every channel in order."""
        teacher, pruned = dict(self.teacher.named_modules()), dict(student.named_modules())
        if all(pruned[n].num_features == teacher[n].num_features for n in FEATURE_NORMS):
            self.channels = None
        else:
            self.channels = tuple(kept_channels(teacher[n], pruned[n]) for n in FEATURE_NORMS)

    def __call__(self, model: nn.Module, batch: dict, model_outputs=None) -> torch.Tensor:
        capture = self._armed.pop(model, None)
        student = capture.take(batch["lidar_bev"]) if capture is not None else None
        if student is None:
            student = fuser_features(model, batch)
        self._armed[model] = _NextForward(model)
        device = batch["lidar_bev"].device
        if next(self.teacher.parameters()).device != device:
            self.teacher.to(device)
        with torch.no_grad():
            teacher = fuser_features(self.teacher, batch)
        return self.gamma * distortion(student, teacher, self.channels)


def rho_schedule(start: float, end: float, rounds: int) -> list:
    return [float(r) for r in np.geomspace(start, end, rounds)]


def _out_dim(unit: Unit) -> int:
    return 1 if isinstance(unit.module, nn.ConvTranspose2d) else 0


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


def project_channels(v: dict, units: list, sparsity: float) -> dict:
    """Per unit, keep the sqrt(1 - sparsity) fraction (rounded up) of output channels with the largest L2 norm."""
    out = {}
    for u in units:
        x, dim = v[u.name], _out_dim(u)
        norms = x.transpose(0, dim).flatten(1).norm(dim=1)
        n_keep = max(1, math.ceil(math.sqrt(1 - sparsity) * len(norms)))
        keep = torch.zeros(len(norms), dtype=x.dtype)
        keep[norms.topk(n_keep).indices] = 1.0
        shape = [1] * x.dim()
        shape[dim] = len(norms)
        out[u.name] = x * keep.view(shape)
    return out


def project(v: dict, model: nn.Module, sparsity: float, granularity: str) -> dict:
    """The Euclidean projection of `v` (unit name -> tensor) onto the sparsity set (approximate for channels)."""
    if granularity == "unstructured":
        return project_unstructured(v, sparsity)
    if granularity == "channel":
        return project_channels(v, prunable_units(model), sparsity)
    masks = nm24_masks(model, Scores({k: x.abs() for k, x in v.items()}))
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


class CrossPruneScorer(Scorer):
    """ADMM towards the sparsity set under the task loss plus the feature-distortion restriction; see the module
    docstring."""

    name = "crossprune"

    def __init__(self, admm_rounds: int = 6, steps_per_round: int = 30, rho_start: float = 1e-4,
                 rho_end: float = 1e-1, gamma: float = 1.0, lr: float = 1e-3, batch_size: int = 4):
        self.rounds, self.steps = admm_rounds, steps_per_round
        self.rhos = rho_schedule(rho_start, rho_end, admm_rounds)
        self.gamma, self.lr, self.batch_size = gamma, lr, batch_size

    def __call__(self, ctx: PruneContext, sparsity: float, granularity: str) -> Scores:
        if granularity not in GRANULARITIES:
            raise ValueError(f"unknown granularity {granularity!r}")
        start = time.perf_counter()
        regulariser = FeatureDistortion(ctx.model, self.gamma)
        model = copy.deepcopy(ctx.model).eval().requires_grad_(False)
        units = prunable_units(model)
        w = {u.name: u.weight.requires_grad_(True) for u in units}
        u_dual = {k: torch.zeros_like(x) for k, x in w.items()}
        z = project(weights_of(model), model, sparsity, granularity)
        optimizer = torch.optim.Adam(list(w.values()), lr=self.lr)
        batches = sampled_batches(ctx.train_set, self.rounds * self.steps, self.batch_size, ctx.seed)
        residuals, last = [relative_residual(weights_of(model), z)], {}  # [0]: before the first W-step
        for rho, next_rho in zip(self.rhos, self.rhos[1:] + self.rhos[-1:]):
            for _ in range(self.steps):
                last = self._w_step(model, next(batches), regulariser, optimizer, w, z, u_dual, rho)
            current = weights_of(model)
            z = project({k: x + u_dual[k] for k, x in current.items()}, model, sparsity, granularity)
            # scaled dual U = y / rho: rescaled when rho changes (Boyd et al. 2011, 3.4.1)
            u_dual = {k: (u_dual[k] + x - z[k]) * (rho / next_rho) for k, x in current.items()}
            residuals.append(relative_residual(current, z))
        final = weights_of(model)
        info = {"gamma": self.gamma, "rho": self.rhos, "admm_rounds": self.rounds,
                "steps_per_round": self.steps, "lr": self.lr, "batch": self.batch_size,
                "projection": PROJECTION[granularity], "residual_per_round": [round(r, 5) for r in residuals],
                "final_residual": round(residuals[-1], 5), "z_sparsity": zero_fraction(z, units),
                "last_losses": last, "seconds": round(time.perf_counter() - start, 2)}
        return Scores(weights={k: x.abs() for k, x in final.items()}, state=final, regulariser=regulariser,
                      info=info)

    def _w_step(self, model: nn.Module, batch: dict, regulariser: FeatureDistortion, optimizer, w: dict, z: dict,
                u_dual: dict, rho: float) -> dict:
        """One optimiser step on L_task + gamma D_feat + rho/2 ||W - Z + U||^2."""
        heat, reg = outputs(model, batch)
        task = detection_loss(heat, reg, batch)[0]
        feat = regulariser(model, batch, (heat, reg))
        penalty = sum(((x - z[k] + u_dual[k]) ** 2).sum() for k, x in w.items())
        loss = task + feat + rho / 2 * penalty
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(w.values()), CLIP_NORM)
        optimizer.step()
        return {k: round(float(v.detach()), 5) for k, v in (("task", task), ("feature", feat), ("penalty", penalty))}


register("crossprune", CrossPruneScorer)
