"""CrossPrune's feature distortion (docs/pruning.md, "CrossPrune-style"): gamma * D_feat, the relative squared error
of the LiDAR BEV, camera BEV and fused BEV maps against a frozen copy of the dense model. The ADMM W-step minimises
it beside the task loss, and fine-tuning keeps it as a loss term (`FeatureDistortionLoss`).

A channel-pruned student's maps have fewer channels than the teacher's: D_feat then compares each student channel
with the teacher channel it came from, found by `kept_channels` when the term is bound, before fine-tuning starts.
"""
from __future__ import annotations

import copy
import weakref

import torch
from torch import nn

from ..calibration import PruneContext, outputs
from ..regularisation import FineTuneLoss

EPS = 1e-12
# The BatchNorm that ends each of fuser_features' maps (LiDAR BEV, camera BEV, fused BEV): its per-channel
# parameters identify which teacher channels a channel-pruned student kept.
FEATURE_NORMS = ("lidar.out.1", "camera.reduce.1", "fuser.conv.1")


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
    """gamma * D_feat against a frozen copy of the dense model: a `FitHooks.regulariser` (model, batch, outputs).
    `channels`: per map, the teacher channels a channel-pruned student's channels correspond to (`kept_channels`),
    or None when the student has the teacher's widths."""

    def __init__(self, dense: nn.Module, gamma: float, channels: tuple | None = None):
        self.teacher = copy.deepcopy(dense).eval().requires_grad_(False)
        self.gamma, self.channels = gamma, channels
        self._armed = weakref.WeakKeyDictionary()

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


class FeatureDistortionLoss(FineTuneLoss):
    """Fine-tuning keeps gamma * D_feat against the dense model the student was pruned from."""

    def __init__(self, gamma: float):
        self.gamma = gamma

    def bind(self, ctx: PruneContext, student: nn.Module) -> FeatureDistortion:
        """For a student with the dense widths (unpruned or masked), every channel in order; for a channel-pruned
        one, the teacher channels it was cut from."""
        teacher, pruned = dict(ctx.model.named_modules()), dict(student.named_modules())
        if all(pruned[n].num_features == teacher[n].num_features for n in FEATURE_NORMS):
            return FeatureDistortion(ctx.model, self.gamma)
        channels = tuple(kept_channels(teacher[n], pruned[n]) for n in FEATURE_NORMS)
        return FeatureDistortion(ctx.model, self.gamma, channels)
