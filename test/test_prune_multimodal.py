"""The multimodal pruning methods on toy fusion models whose right answer is known, and end to end on the tiny
`small` detector with synthetic batches.

The toy: each branch has a `shared` unit that passes on a feature both sensors observe and an `own` unit passing
on a feature only this sensor observes; a 1x1 fuser predicts three heatmap classes (shared, LiDAR-only,
camera-only feature). Its interface is the detector's: presence flags zero a branch at the fuser input, and the
unit names carry the modality prefixes `prunable_units` tags.
"""
import copy
import json

import numpy as np
import pytest
import torch
from torch import nn

from fusion_prune_ros.data.dataset import collate
from fusion_prune_ros.model.flops import example_inputs
from fusion_prune_ros.prune.calibration import PruneContext, outputs
from fusion_prune_ros.prune.granularity import channel_prune, channel_selection, is_nm24, unstructured_masks
from fusion_prune_ros.prune.registry import build_method
from fusion_prune_ros.prune.target import PARAMS, Target
from fusion_prune_ros.analysis.altermoma_b_sweep import pruned_by_module
from fusion_prune_ros.prune.methods.alter_eva import Stage, alter_eva
from fusion_prune_ros.prune.methods.altermoma import altermoma
from fusion_prune_ros.prune.methods.altermoma_stats import channels_reactivated, spearman
from fusion_prune_ros.prune.methods.baselines import TaylorImportance
from fusion_prune_ros.prune.methods.crossprune import Projection, crossprune, project_unstructured, relative_residual
from fusion_prune_ros.prune.methods.feature_distortion import (FEATURE_NORMS, FeatureDistortion, FeatureDistortionLoss,
                                                               distortion, fuser_features, kept_channels)
from fusion_prune_ros.prune.methods.reactivation import reactivated, reactivation_trajectory
from fusion_prune_ros.prune.importance import Scores
from fusion_prune_ros.prune.units import Unit, prunable_units, weights_of
from small_prune_context import one_thread, small_prune_context  # noqa: F401 (one_thread: a fixture)

CELLS = 8

# fuser rows: [lidar.shared, lidar.own, camera.shared, camera.own] -> class (shared, LiDAR-only, camera-only)
BOTH_COPIES_USED = ([6.0, 0.0, 6.0, 0.0], [0.0, 8.0, 0.0, 0.0], [0.0, 0.0, 0.0, 8.0]), (-8.0, -4.0, -4.0)
CAMERA_COPY_USED = ([0.0, 0.0, 8.0, 0.0], [0.0, 8.0, 0.0, 0.0], [0.0, 0.0, 0.0, 8.0]), (-4.0, -4.0, -4.0)


pytestmark = pytest.mark.usefixtures("one_thread")


class Branch(nn.Module):
    def __init__(self):
        super().__init__()
        self.shared = nn.Conv2d(1, 1, 1, bias=False)
        self.own = nn.Conv2d(1, 1, 1, bias=False)
        for conv in (self.shared, self.own):
            nn.init.ones_(conv.weight)

    def forward(self, x):
        return torch.cat([self.shared(x[:, :1]), self.own(x[:, 1:])], 1)


class Fuser(nn.Module):
    def __init__(self, weight, bias):
        super().__init__()
        self.conv = nn.Conv2d(4, 3, 1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor(weight).view(3, 4, 1, 1))
            self.conv.bias.copy_(torch.tensor(bias))

    def forward(self, lidar, camera):
        return self.conv(torch.cat([lidar, camera], 1))


class ToyFusion(nn.Module):
    def __init__(self, fuser):
        super().__init__()
        self.lidar, self.camera, self.fuser = Branch(), Branch(), Fuser(*fuser)

    def forward(self, lidar_bev, images, cam_grid, presence):
        lidar = self.lidar(lidar_bev) * presence[:, 0].view(-1, 1, 1, 1)
        camera = self.camera(images) * presence[:, 1].view(-1, 1, 1, 1)
        heat = self.fuser(lidar, camera)
        return heat, heat.new_zeros(heat.shape[0], 10, *heat.shape[2:])


def toy_items(n: int, seed: int = 0) -> list:
    """The shared feature is twice as frequent as the unique ones, so the dense model's Taylor scores favour the
    shared units: only the cross-modal view can tell that they are redundant."""
    rng = np.random.default_rng(seed)
    items = []
    for i in range(n):
        shared, lidar_only, camera_only = ((rng.random((1, CELLS, CELLS)) < p).astype(np.float32)
                                           for p in (0.2, 0.1, 0.1))
        items.append({"index": i, "lidar_bev": np.concatenate([shared, lidar_only]),
                      "images": np.concatenate([shared, camera_only])[None],
                      "cam_grid": np.zeros(1, np.float32), "presence": np.ones(2, np.float32),
                      "heatmap": np.concatenate([shared, lidar_only, camera_only]),
                      "regression": np.zeros((10, CELLS, CELLS), np.float32),
                      "reg_mask": np.zeros((CELLS, CELLS), np.float32),
                      "vel_mask": np.zeros((CELLS, CELLS), np.float32)})
    return items


def toy_context(fuser) -> PruneContext:
    items = toy_items(32)
    return PruneContext(ToyFusion(fuser), None, [collate(items[k:k + 8]) for k in (0, 8)], items, seed=0)


def mean_scores(scores) -> dict:
    return {k: float(v.mean()) for k, v in scores.weights.items()}


def test_altermoma_ranks_the_cross_modal_duplicate_below_the_unique_feature():
    ctx = toy_context(BOTH_COPIES_USED)
    taylor = mean_scores(TaylorImportance()(ctx))
    alter = mean_scores(altermoma(reactivation_steps=20, reactivation_lr=0.05).importance(ctx))
    for branch in ("lidar", "camera"):
        assert taylor[f"{branch}.shared"] > taylor[f"{branch}.own"]  # single-modal view keeps the duplicate
        assert alter[f"{branch}.shared"] < alter[f"{branch}.own"]


def test_altermoma_reactivation_makes_an_unused_lidar_unit_important():
    ctx = toy_context(CAMERA_COPY_USED)
    scores = altermoma(reactivation_steps=20, reactivation_lr=0.05).importance(ctx)
    top = scores.info["reactivation"]["top_lidar_units_camera_masked"][0]
    # unused with the camera on (and at theta0 with it masked: the fuser ignores it), important after reactivation
    assert top["unit"] == "lidar.shared"
    assert top["deci"] == 0.0 and top["masked_before"] == 0.0 and top["masked_after"] > 0.0
    assert scores.info["reactivation"]["rank_changed"]["lidar"] == 1.0
    assert {m: v["params"] for m, v in scores.info["alter_eva"].items()} == {"camera": 2, "lidar": 2, "fusion": 12}
    assert float(scores.weights["lidar.shared"].sum()) < 0.0  # pure ReRI: the first LiDAR unit to go
    assert ctx.model.fuser.conv.weight[0, 0].item() == 0.0  # scoring left the model alone


def test_reactivation_trajectory_gives_the_b_step_model_at_every_checkpoint():
    """One run yields theta_B for every B of a B sweep: each checkpoint equals a separate B-step reactivation, B = 0
    is theta0, and the model handed in is left alone."""
    ctx = toy_context(CAMERA_COPY_USED)
    before = copy.deepcopy(ctx.model.state_dict())
    seen = {}
    for b, work in reactivation_trajectory(ctx.model, ctx.train_set, "camera", (5, 0, 2), 0.05, 4, 0):
        assert not work.training
        seen[b] = copy.deepcopy(work.state_dict())
    assert list(seen) == [0, 2, 5]
    for b in (0, 2, 5):
        alone = reactivated(ctx.model, ctx.train_set, "camera", b, 0.05, 4, 0).state_dict()
        assert all(torch.equal(seen[b][k], alone[k]) for k in alone), b
    assert all(torch.equal(v, ctx.model.state_dict()[k]) for k, v in before.items())
    assert not torch.equal(seen[5]["fuser.conv.weight"], seen[0]["fuser.conv.weight"])


def test_pruned_by_module_applies_one_global_threshold():
    scores = {"a": torch.tensor([1.0, 2.0, 3.0, 4.0]), "b": torch.tensor([-1.0, 5.0]), "c": torch.tensor([0.5, 6.0])}
    modules = {"a": "camera", "b": "lidar", "c": "fusion"}
    # 50 % of 8 weights: the four lowest (-1, 0.5, 1, 2) go
    assert pruned_by_module(scores, modules, 0.5) == {"camera": 0.5, "lidar": 0.5, "fusion": 0.5}
    assert pruned_by_module(scores, modules, 0.25) == {"camera": 0.0, "lidar": 0.5, "fusion": 0.5}


def test_altermoma_normalisation_scope_decides_whether_module_size_sets_the_scores():
    """The same raw DeCI and ReRI values in a 1-weight LiDAR unit and in 3-weight camera and fusion units: within
    modules (the paper's setting) the small module's weights score 3x higher; over the network they score alike."""
    ones = lambda n: torch.ones(n)  # noqa: E731
    modules = {"lidar.a": "lidar", "camera.a": "camera", "fuser.a": "fusion"}
    deci = {"lidar.a": ones(1) * 2, "camera.a": ones(3) * 2, "fuser.a": ones(3) * 2}
    reri = {"lidar.a": ones(1), "camera.a": ones(3), "fuser.a": ones(3)}
    per_module = alter_eva(deci, reri, reri, modules, alpha=1.0, beta=0.5)
    network = alter_eva(deci, reri, reri, modules, alpha=1.0, beta=0.5, scope="network")
    assert torch.allclose(per_module["lidar.a"], 3 * per_module["camera.a"][:1])  # 1 - 0.5 vs (1 - 0.5) / 3
    assert torch.allclose(per_module["camera.a"], per_module["fuser.a"])
    assert torch.allclose(network["lidar.a"], network["camera.a"][:1])  # 2/14 - 0.5 / 7, the same everywhere
    assert torch.allclose(network["fuser.a"], network["camera.a"])
    assert torch.allclose(network["lidar.a"], torch.tensor([2 / 14 - 0.5 / 7]))
    with pytest.raises(ValueError, match="scope"):
        alter_eva(deci, reri, reri, modules, 1.0, 1.0, scope="layer")


def test_channel_reactivation_counts_channels_that_climb_from_the_bottom_half():
    conv, deconv = nn.Conv2d(2, 4, 3), nn.ConvTranspose2d(4, 2, 2)  # out channels on dim 0 and dim 1
    units = [Unit("lidar.a", conv, "lidar"), Unit("lidar.b", deconv, "lidar")]
    deci = {"lidar.a": torch.tensor([1.0, 2.0, 3.0, 4.0]).view(4, 1, 1, 1).expand(4, 2, 3, 3),
            "lidar.b": torch.tensor([1.0, 2.0]).view(1, 2, 1, 1).expand(4, 2, 2, 2)}
    # channel 0 of lidar.a goes from least to most important; lidar.b's ranking does not change
    after = {"lidar.a": torch.tensor([9.0, 2.0, 3.0, 4.0]).view(4, 1, 1, 1).expand(4, 2, 3, 3),
             "lidar.b": -deci["lidar.b"]}
    stat = channels_reactivated(deci, Stage(before=deci, after=after, seconds=0.0), units)
    assert stat["bottom_half_channels"] == 3 and stat["rose_to_top_quarter"] == 1
    assert stat["largest"] == {"unit": "lidar.a", "channel": 0, "percentile_before": 0.0, "percentile_after": 1.0,
                               "climb": 1.0}


def test_spearman_is_the_rank_correlation():
    x = torch.tensor([0.1, 5.0, 2.0, 3.0])
    assert spearman(x, x ** 3) == pytest.approx(1.0) and spearman(x, -x) == pytest.approx(-1.0)
    assert spearman(x, torch.tensor([1.0, 2.0, 4.0, 3.0])) == pytest.approx(0.2)  # 1 - 6 * 8 / (4 * 15)


def test_crossprune_admm_converges_to_the_projection():
    ctx = toy_context(BOTH_COPIES_USED)
    with torch.no_grad():  # cross-talk the sparsity set removes: half the fuser's weights
        weight = ctx.model.fuser.conv.weight
        weight += (weight == 0) * 0.5 * torch.randn(weight.shape, generator=torch.Generator().manual_seed(0))
    updated = crossprune(admm_rounds=6, steps_per_round=10, lr=0.05).update(ctx, Target(PARAMS, 0.5), "unstructured")
    residuals = updated.info["residual_per_round"]  # [0]: the dense weights against their projection
    assert residuals[0] > 0.05 and residuals[-1] < 0.1 * residuals[0]
    final = updated.weights
    assert relative_residual(final, project_unstructured(final, 0.5)) < 0.05
    assert torch.equal(ctx.model.lidar.own.weight, torch.ones(1, 1, 1, 1))


# ---- the small detector ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small():
    return small_prune_context()


def test_feature_distortion_is_zero_for_the_dense_model_and_positive_after_a_perturbation(small):
    batch = small.calibration[0]
    reg = FeatureDistortion(small.model, gamma=2.0)
    assert not any(p.requires_grad for p in reg.teacher.parameters())
    assert float(reg(small.model, batch).detach()) == 0.0
    student = copy.deepcopy(small.model)
    lidar_unit = next(u for u in prunable_units(student) if u.modality == "lidar")
    with torch.no_grad():
        lidar_unit.weight.mul_(0.5)
    recomputed = reg(student, batch)  # first call: runs its own forward, arms the capture of the next one
    assert float(recomputed.detach()) > 0.0
    captured = reg(student, batch, outputs(student, batch))  # the training loop's order: forward, then regulariser
    assert torch.allclose(captured, recomputed)
    captured.backward()
    assert lidar_unit.weight.grad.abs().sum() > 0
    with torch.no_grad():
        outputs(student.eval(), batch)  # evaluation after fine-tuning removes the one-shot hooks
    assert not student._forward_pre_hooks and not student.fuser._forward_hooks


def test_projections_follow_each_granularity(small):
    model = small.model
    units = prunable_units(model)
    inputs = example_inputs(small.cfg)["fused"]
    v = {u.name: u.weight.detach() for u in units}
    project = {g: Projection(model, 0.5, g, inputs, None) for g in ("unstructured", "nm24", "channel")}
    z = project["unstructured"](v)
    assert sum(int((x == 0).sum()) for x in z.values()) == round(0.5 * sum(x.numel() for x in v.values()))
    nm24, channels = project["nm24"](v), project["channel"](v)
    for u in units:
        assert is_nm24(nm24[u.name], isinstance(u.module, nn.ConvTranspose2d))
    # channel: Z is the network the channel granularity cuts from the same scores, its removed weights zeroed
    pruned, info = channel_prune(model, Scores({k: x.abs() for k, x in v.items()}), 0.5, inputs)
    assert abs(info["realised_sparsity"] - 0.5) <= 0.01
    for u in prunable_units(pruned):
        assert torch.equal(_kept_block(channels[u.name], u), u.weight.detach())


def _kept_block(z: torch.Tensor, unit: Unit) -> torch.Tensor:
    """The rows and columns of `z` (a dense unit's weight) that are not wholly zero: the weight of the network
    with Z's zeroed channels removed."""
    out = 1 if isinstance(unit.module, nn.ConvTranspose2d) else 0
    rows = z.transpose(0, out).flatten(1).abs().sum(1) > 0
    cols = z.transpose(0, 1 - out).flatten(1).abs().sum(1) > 0
    return z.index_select(out, rows.nonzero().flatten()).index_select(1 - out, cols.nonzero().flatten())


def test_crossprune_prunes_the_channels_its_last_projection_zeroes(small):
    """Under channel granularity the pruned network is the ADMM weights with exactly the channels of the last Z
    removed, not those a new ranking of |W_final| would remove."""
    # a constant rho keeps the dual U = sum (W - Z) whole, so |W + U| ranks channels differently from |W|
    method = crossprune(admm_rounds=3, steps_per_round=2, rho_start=1.0, rho_end=1.0, lr=0.05)
    plan = method.plan(small, Target(PARAMS, 0.5), "channel")
    inputs = example_inputs(small.cfg)["fused"]
    kept = channel_selection(plan.model, Scores(method.update.projected), 0.5, inputs)  # the last Z's support
    pruned, _ = channel_prune(plan.model, plan.scores, 0.5, inputs)
    units = {u.name: u for u in prunable_units(plan.model)}
    moved = {n: w.detach() for n, w in weights_of(plan.model).items()}
    for u in prunable_units(pruned):
        assert torch.equal(_kept_block(moved[u.name] * kept[u.name], units[u.name]), u.weight.detach())
    by_final_weights, _ = channel_prune(plan.model, Scores(plan.scores.weights), 0.5, inputs)
    assert any(a.weight.shape != b.weight.shape or not torch.equal(a.weight, b.weight)
               for a, b in zip(prunable_units(pruned), prunable_units(by_final_weights)))


def test_both_scorers_run_end_to_end_on_the_small_detector(small):
    before = copy.deepcopy(small.model.state_dict())
    units = {u.name: u.weight.shape for u in prunable_units(small.model)}
    target = Target(PARAMS, 0.5)
    alter = build_method("altermoma", reactivation_steps=2).plan(small, target, "unstructured")
    crossprune_method = build_method("crossprune-distil", admm_rounds=2, steps_per_round=2)
    cross = crossprune_method.plan(small, target, "unstructured")
    for plan in (alter, cross):
        assert {k: v.shape for k, v in plan.scores.weights.items()} == units
        assert all(torch.isfinite(v).all() for v in plan.scores.weights.values())
        json.dumps(plan.info)  # goes into the variant manifest
        masks = unstructured_masks(small.model, plan.scores, 0.5)
        assert sum(int((~m).sum()) for m in masks.values()) == round(0.5 * sum(m.numel() for m in masks.values()))
    pruned, info = channel_prune(small.model, alter.scores, 0.5, example_inputs(small.cfg)["fused"])  # negative scores
    assert abs(info["realised_sparsity"] - 0.5) < 0.05
    assert {u.name: u.weight.shape for u in prunable_units(cross.model)} == units
    term = crossprune_method.loss.bind(small, small.model)
    assert float(term(small.model, small.calibration[0]).detach()) == 0.0
    assert cross.info["rho"][0] == pytest.approx(1e-4) and cross.info["rho"][-1] == pytest.approx(1e-1)
    after = small.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_feature_distortion_compares_a_channel_pruned_student_with_the_channels_it_kept(small):
    """CrossPrune fine-tunes a channel-pruned student against the dense teacher: its narrower maps are compared
    with the teacher channels they were cut from (a width mismatch once stopped the sweep)."""
    scores = build_method("magnitude").importance(small)
    pruned, _ = channel_prune(small.model, scores, 0.5, example_inputs(small.cfg)["fused"])
    teacher, student = dict(small.model.named_modules()), dict(pruned.named_modules())
    assert any(student[n].num_features < teacher[n].num_features for n in FEATURE_NORMS)
    for n in FEATURE_NORMS:  # the matched channels are the ones whose weights the student carries
        idx = kept_channels(teacher[n], student[n])
        assert len(idx) == student[n].num_features and bool((idx[1:] > idx[:-1]).all())
        assert torch.equal(teacher[n].weight[idx], student[n].weight)
    reg = FeatureDistortionLoss(gamma=1.0).bind(small, pruned)
    batch = small.calibration[0]
    with torch.no_grad():
        got = reg(pruned, batch)
        want = distortion(fuser_features(pruned, batch),
                          tuple(t[:, i] for t, i in zip(fuser_features(small.model, batch), reg.channels)))
    assert torch.isfinite(got) and float(got) == pytest.approx(float(want))
    reg = FeatureDistortionLoss(gamma=1.0).bind(small, small.model)  # the same widths: every channel, in order
    assert reg.channels is None and float(reg(small.model, batch).detach()) == 0.0
    moved = copy.deepcopy(pruned)
    with torch.no_grad():
        dict(moved.named_modules())[FEATURE_NORMS[0]].weight.add_(1.0)  # trained already: no guessing
    with pytest.raises(ValueError, match="matches no teacher channel"):
        FeatureDistortionLoss(1.0).bind(small, moved)
