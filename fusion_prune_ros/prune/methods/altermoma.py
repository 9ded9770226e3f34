"""AlterMOMA (Sun, Lu, Liu et al., NeurIPS 2024, arXiv 2409.17728; docs/pruning.md, "AlterMOMA"): alternative
modality masking. The method is its importance, AlterEva, under one global threshold.

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
- Reactivation: a deep copy of the model, all parameters trainable, plain SGD (no momentum, no weight decay) at
  lr `reactivation_lr` (1e-3), the step the paper's first-order derivation assumes; `reactivation_steps` B (100,
  not reported by the paper) steps of batch size 4 drawn from the training set with a generator seeded by
  ctx.seed (the same batches for both stages), train mode with BatchNorm in eval mode (running statistics
  frozen), gradient norm clipped at 10 as in the project's training loop. Each stage starts from its own copy of
  theta0.
- Channel scores (the channel granularity, `Scores.channel_weights`): DeCI and ReRI summed over each output
  channel (the channel's first-order loss change), L1-normalised over the module's channels, then combined as
  per weight (`alter_eva.channel_alter_eva`); unstructured and 2:4 rank the per-weight AlterEva.
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

from torch import nn

from ..calibration import PruneContext
from ..gradients import weight_gradients
from ..importance import Importance, Scores
from ..method import EXTRA_OPTIMISER_STEPS, Method
from ..units import prunable_units, weights_of
from .alter_eva import MODULE_OF_MODALITY, Stage, alter_eva, channel_alter_eva, per_weight
from .altermoma_stats import channels_reactivated, eva_stats, rank_changed, top_reactivated
from .reactivation import reactivated


def altermoma(reactivation_steps: int = 100, reactivation_lr: float = 1e-3, alpha: float = 1.0, beta: float = 1.0,
              batch_size: int = 4, normalise: str = "module") -> Method:
    """AlterEva under one global threshold, the paper's allocation and its alpha = beta = 1."""
    return Method(AlterEvaImportance(reactivation_steps, reactivation_lr, alpha, beta, batch_size, normalise))


class AlterEvaImportance(Importance):
    """AlterEva scores from alternative modality masking, with the options of `altermoma`; see the module
    docstring."""

    def __init__(self, reactivation_steps: int, reactivation_lr: float, alpha: float, beta: float, batch_size: int,
                 normalise: str):
        if normalise not in ("module", "network"):
            raise ValueError(f"normalise must be 'module' or 'network', not {normalise!r}")
        self.steps, self.lr = reactivation_steps, reactivation_lr
        self.alpha, self.beta, self.batch_size, self.normalise = alpha, beta, batch_size, normalise

    def __call__(self, ctx: PruneContext) -> Scores:
        start = time.perf_counter()
        dense = copy.deepcopy(ctx.model).eval()
        theta0 = weights_of(dense)
        grads = weight_gradients(dense, ctx.calibration)
        contribution = {k: w * grads[k] for k, w in theta0.items()}
        deci = {k: c.abs() for k, c in contribution.items()}
        deci_seconds = time.perf_counter() - start
        lidar_masked = self._stage(dense, ctx, "lidar", theta0)
        camera_masked = self._stage(dense, ctx, "camera", theta0)
        modules = {u.name: MODULE_OF_MODALITY[u.modality] for u in prunable_units(dense)}
        weights = alter_eva(deci, lidar_masked.reri(), camera_masked.reri(), modules, self.alpha, self.beta,
                            self.normalise)
        out_dims = {u.name: 1 if isinstance(u.module, nn.ConvTranspose2d) else 0 for u in prunable_units(dense)}
        channels = channel_alter_eva(contribution, lidar_masked, camera_masked, modules, out_dims, self.alpha,
                                     self.beta, self.normalise)
        channel_weights = per_weight(channels, {k: w.shape for k, w in theta0.items()}, out_dims)
        names = {m: [n for n, mm in modules.items() if mm == m] for m in ("camera", "lidar", "fusion")}
        units = {m: [u for u in prunable_units(dense) if u.modality == m] for m in ("camera", "lidar")}
        info = {
            "reactivation_steps": self.steps, "reactivation_lr": self.lr, "reactivation_batch": self.batch_size,
            EXTRA_OPTIMISER_STEPS: 2 * self.steps,  # one reactivation per masked modality
            "alpha": self.alpha, "beta": self.beta, "normalise": self.normalise,
            "gB": "mean over the calibration batches",
            "stage_seconds": {"deci": round(deci_seconds, 2), "lidar_masked": round(lidar_masked.seconds, 2),
                              "camera_masked": round(camera_masked.seconds, 2)},
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
        return Scores(weights, info, channel_weights)

    def _stage(self, dense: nn.Module, ctx: PruneContext, modality: str, theta0: dict) -> Stage:
        """Mask `modality`, take theta0 * g before and after reactivation (theta0 in both products)."""
        start = time.perf_counter()
        g0 = weight_gradients(dense, ctx.calibration, modality)
        trained = reactivated(dense, ctx.train_set, modality, self.steps, self.lr, self.batch_size, ctx.seed)
        g_b = weight_gradients(trained, ctx.calibration, modality)
        before = {k: w * g0[k] for k, w in theta0.items()}
        after = {k: w * g_b[k] for k, w in theta0.items()}
        return Stage(before, after, time.perf_counter() - start)


def altermoma_deci_weighted(reactivation_steps: int = 100, reactivation_lr: float = 1e-3, batch_size: int = 4,
                            normalise: str = "module") -> Method:
    """AlterMOMA with beta = alpha / 2 (registry name "altermoma-deci-weighted"): each module's AlterEva keeps a
    positive total, so one global threshold compares modules by their contribution as well as within them. Not the
    paper's setting; the variant the beta ablation measured (docs/pruning.md, "The beta ablation")."""
    return altermoma(reactivation_steps, reactivation_lr, 1.0, 0.5, batch_size, normalise)
