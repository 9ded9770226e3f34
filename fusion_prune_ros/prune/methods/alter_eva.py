"""AlterEva, AlterMOMA's importance (docs/pruning.md, "AlterMOMA"): each parameter's contribution in the dense
fused model (DeCI) minus how much its contribution changes when the fuser reactivates it with the other modality
masked (ReRI), each term L1-normalised within its module."""
from __future__ import annotations

from dataclasses import dataclass

import torch

MODULE_OF_MODALITY = {"camera": "camera", "lidar": "lidar", "fusion": "fusion", "head": "fusion"}


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


def channel_sums(terms: dict, out_dims: dict) -> dict:
    """unit name -> the sum of its signed per-weight `terms` over each output channel (`out_dims`: unit name -> the
    weight's output-channel dimension): the first-order loss change of removing that whole channel."""
    return {n: t.movedim(out_dims[n], 0).flatten(1).sum(1) for n, t in terms.items()}


def channel_alter_eva(contribution: dict, lidar_masked: Stage, camera_masked: Stage, modules: dict, out_dims: dict,
                      alpha: float, beta: float, scope: str = "module") -> dict:
    """AlterEva per output channel (the paper's appendix D as read in docs/pruning.md): DeCI_c = |sum over the
    channel of theta0 * g|, ReRI_c = |sum of theta0 * g0 - sum of theta0 * gB| over the channel, each L1-normalised
    over the channels of its module, combined as `alter_eva` combines weights. `contribution`: the signed
    theta0 * g of the fused model. Returns unit name -> one score per output channel."""
    deci = {n: s.abs() for n, s in channel_sums(contribution, out_dims).items()}

    def reri(stage: Stage) -> dict:
        before, after = channel_sums(stage.before, out_dims), channel_sums(stage.after, out_dims)
        return {n: (before[n] - after[n]).abs() for n in before}

    return alter_eva(deci, reri(lidar_masked), reri(camera_masked), modules, alpha, beta, scope)


def per_weight(channel_scores: dict, shapes: dict, out_dims: dict) -> dict:
    """unit name -> the weight's shape holding its output channel's score in every weight of the channel."""
    out = {}
    for n, score in channel_scores.items():
        view = [1] * len(shapes[n])
        view[out_dims[n]] = -1
        out[n] = score.view(view).expand(shapes[n]).clone()
    return out
