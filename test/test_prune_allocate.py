"""Allocators (global threshold, uniform, knapsack DP, Lagrangian) and the layer-adaptive methods DM3D-style and
MMPrune4U-style, on toy problems with known answers and on the tiny `small` detector with synthetic batches."""
import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from fusion_prune_ros.config import DetectorConfig, load_yaml
from fusion_prune_ros.errors import UserError
from fusion_prune_ros.model.detector import FusionDetector
from fusion_prune_ros.model.flops import example_inputs
from fusion_prune_ros.model.targets import build_targets
from fusion_prune_ros.prune.allocation import global_threshold, uniform
from fusion_prune_ros.prune.calibration import PruneContext
from fusion_prune_ros.prune.gradients import objective_gradients
from fusion_prune_ros.prune.granularity import unstructured_masks
from fusion_prune_ros.prune.knapsack import allocate_for_time, dp_allocate, lagrangian_allocate, total
from fusion_prune_ros.prune.methods.dm3d import dm3d
from fusion_prune_ros.prune.methods.hessian_curves import distortion_curves, forward_scale, hessian_curve
from fusion_prune_ros.prune.output_distortion import dense_outputs, distortion, forward_curve, prune_count
from fusion_prune_ros.prune.registry import build_method
from fusion_prune_ros.prune.target import PARAMS, TIME, Target
from fusion_prune_ros.prune.unit_flops import unit_macs
from fusion_prune_ros.analysis.curve_shapes import allocation_distortion, format_curve_shapes, measure_curve_shapes
from fusion_prune_ros.prune.methods.mmprune4u import GRID, mmprune4u
from fusion_prune_ros.prune.units import Unit, prunable_params, prunable_units
from fusion_prune_ros.prune.variant import SPARSITY_TOLERANCE

SMALL = Path(__file__).parents[1] / "config" / "detector" / "small.yaml"
# Zeroing this BatchNorm's scale and shift makes the whole coarse BEV path (levels 1-2 and both upsamplers) dead:
# their weights cannot influence any output.
DEAD_BN = "bev.up1.1"
DEAD_UNITS = ("bev.level1.0.0", "bev.level1.1.0", "bev.level2.0.0", "bev.level2.1.0", "bev.up2.0", "bev.up1.0")


# ---- allocators ---------------------------------------------------------------------------------------------------


def _brute_force(curves, ratios, costs, budget):
    names = list(curves)
    best = np.inf
    for ks in itertools.product(range(len(ratios)), repeat=len(names)):
        if sum(costs[n][k] for n, k in zip(names, ks)) <= budget:
            best = min(best, sum(curves[n][k] for n, k in zip(names, ks)))
    return best


def _random_problem(rng, n_units, n_ratios, integer_costs):
    ratios = np.linspace(0.0, 0.9, n_ratios)
    curves = {f"u{i}": np.sort(rng.uniform(0, 10, n_ratios)) * rng.uniform(0.1, 3) for i in range(n_units)}
    for c in curves.values():
        c[0] = 0.0
    sizes = rng.integers(5, 40, n_units) if integer_costs else rng.uniform(5, 40, n_units)
    costs = {f"u{i}": sizes[i] * (1 - ratios) for i in range(n_units)}
    if integer_costs:
        costs = {n: np.rint(c * 10) for n, c in costs.items()}
    return curves, ratios, costs


def test_global_threshold_prunes_the_lowest_scores_exactly_even_under_ties():
    scores = {"a": torch.tensor([0.1, 0.5, 0.5, 0.9]), "b": torch.tensor([[0.5, 0.2], [0.3, 0.5]])}
    keep = global_threshold(scores, 0.5)  # 4 of 8 go: 0.1, 0.2, 0.3 and one of the four tied 0.5s
    assert sum((1 - keep[n]) * scores[n].numel() for n in scores) == pytest.approx(4)
    assert keep["a"] >= 0.5 and keep["b"] <= 0.5
    assert global_threshold(scores, 0.0) == {"a": 1.0, "b": 1.0}
    assert uniform(["a", "b"], 0.3) == {"a": pytest.approx(0.7), "b": pytest.approx(0.7)}


@pytest.mark.parametrize("seed", range(4))
def test_dp_equals_brute_force_on_integer_costs(seed):
    """With integer costs and one bin per cost unit the DP is exact: the brute-force optimum over 5^4 choices."""
    rng = np.random.default_rng(seed)
    curves, ratios, costs = _random_problem(rng, 4, 5, integer_costs=True)
    budget = float(np.rint(0.5 * sum(c[0] for c in costs.values())))
    choice = dp_allocate(curves, ratios, costs, budget, bins=int(budget))
    assert total(choice, ratios, costs) <= budget
    assert total(choice, ratios, curves) == pytest.approx(_brute_force(curves, ratios, costs, budget))


@pytest.mark.parametrize("seed", range(3))
def test_dp_on_real_costs_is_feasible_and_within_the_quantisation_bound(seed):
    rng = np.random.default_rng(100 + seed)
    curves, ratios, costs = _random_problem(rng, 4, 5, integer_costs=False)
    budget, bins = 0.45 * sum(c[0] for c in costs.values()), 50
    choice = dp_allocate(curves, ratios, costs, budget, bins=bins)
    assert total(choice, ratios, costs) <= budget
    # at least as good as the exact optimum for the budget less one bin per unit
    bound = _brute_force(curves, ratios, costs, budget - len(curves) * budget / bins)
    assert total(choice, ratios, curves) <= bound + 1e-9
    assert total(choice, ratios, curves) >= _brute_force(curves, ratios, costs, budget) - 1e-9


def test_dp_prunes_a_free_unit_fully_and_rejects_an_impossible_budget():
    ratios = np.array([0.0, 0.5, 0.9])
    curves = {"free": np.zeros(3), "busy": np.array([0.0, 1.0, 5.0])}
    costs = {"free": np.array([1e-3, 5e-4, 1e-4]), "busy": np.array([10.0, 5.0, 1.0])}  # free: far below a bin
    choice = dp_allocate(curves, ratios, costs, 10.01, bins=10)
    assert choice == {"free": 0.9, "busy": 0.0}
    with pytest.raises(ValueError, match="no allocation fits"):
        dp_allocate(curves, ratios, costs, 0.5, bins=10)


@pytest.mark.parametrize("fraction", [0.3, 0.5, 0.7])
def test_lagrangian_matches_the_dp_on_convex_curves(fraction):
    """Convex distortion in the pruned fraction, linear cost: the Lagrangian's hull solution is the DP optimum up
    to the budget the hull leaves unused (one grid step of one unit)."""
    rng = np.random.default_rng(7)
    ratios = np.linspace(0.0, 0.95, 40)
    sizes = rng.uniform(100, 1000, 8)
    curves = {f"u{i}": rng.uniform(0.5, 5) * ratios ** rng.uniform(1.5, 3) for i in range(8)}
    costs = {f"u{i}": sizes[i] * (1 - ratios) for i in range(8)}
    budget = fraction * sizes.sum()
    dp = dp_allocate(curves, ratios, costs, budget, bins=4000)
    lag = lagrangian_allocate(curves, ratios, costs, budget)
    assert total(lag, ratios, costs) <= budget
    d_dp, d_lag = total(dp, ratios, curves), total(lag, ratios, curves)
    assert d_lag >= d_dp - 1e-9  # the DP is optimal
    assert d_lag <= d_dp * 1.03
    assert max(abs(dp[n] - lag[n]) for n in dp) <= 3 * (ratios[1] - ratios[0]) + 1e-9


# ---- DM3D-style: the Hessian curve ----------------------------------------------------------------------------------


def test_hessian_curve_equals_the_quadratic_form_computed_directly():
    """The incremental curve (cumulative sums) is 0.5 dW^T (g g^T + kappa I) dW with dW = -w on the lowest |w g|
    weights, the rank-one term taken as a running maximum over phi (it can fall when signs cancel)."""
    gen = torch.Generator().manual_seed(0)
    w, g = torch.randn(6, 4, 3, 3, generator=gen), torch.randn(6, 4, 3, 3, generator=gen)
    ratios, kappa = np.linspace(0, 0.99, 17), 0.3
    order = torch.argsort((w * g).abs().flatten())
    flat_w, flat_g = w.flatten().double(), g.flatten().double()
    hessian = torch.outer(flat_g, flat_g) + kappa * torch.eye(w.numel(), dtype=torch.float64)
    direct, running = [], 0.0
    for phi in ratios:
        dw = torch.zeros(w.numel(), dtype=torch.float64)
        idx = order[:prune_count(w.numel(), phi)]
        dw[idx] = -flat_w[idx]
        running = max(running, float(flat_g @ dw) ** 2)
        direct.append(0.5 * (running + kappa * float(dw @ dw)))
        assert 0.5 * float(dw @ hessian @ dw) <= direct[-1] + 1e-9  # equal until the running maximum kicks in
    curve = hessian_curve(w, g, kappa, ratios)
    np.testing.assert_allclose(curve, direct, rtol=1e-9, atol=1e-12)
    assert np.all(np.diff(curve) >= 0)


def test_unit_macs_agree_with_torch_flop_counter():
    """Conv: output pixels x weight numel; transposed conv: input pixels x weight numel (torch counts 2 per MAC)."""
    conv, up = nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False), nn.ConvTranspose2d(8, 4, 2, 2, bias=False)
    model = nn.Sequential(conv, up)
    x = torch.randn(2, 3, 16, 16)
    with FlopCounterMode(display=False) as counter:
        model(x)
    macs = unit_macs(model, (x,), units=[Unit("conv", conv, "fusion"), Unit("up", up, "fusion")])
    assert 2 * sum(macs.values()) == counter.get_total_flops()
    assert macs["conv"] == 2 * 8 * 8 * 8 * 3 * 9


# ---- the small detector ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cfg():
    return load_yaml(DetectorConfig, SMALL)


def _batches(cfg, n_batches=2, batch_size=2, seed=0):
    """Collate-compatible synthetic batches: random inputs of the right shapes, targets from random boxes."""
    gen, rng = torch.Generator().manual_seed(seed), np.random.default_rng(seed)
    out = []
    for i in range(n_batches):
        lidar, images, grid, _ = example_inputs(cfg, batch=batch_size)["fused"]
        targets = []
        for _ in range(batch_size):
            boxes = np.c_[rng.uniform(-40, 40, (3, 2)), rng.uniform(-1, 1, (3, 1)), rng.uniform(1, 4, (3, 3)),
                          rng.uniform(-3, 3, (3, 1)), rng.normal(0, 1, (3, 2))].astype(np.float32)
            targets.append(build_targets(boxes, rng.integers(0, 10, 3), cfg.grid))
        heat, reg, reg_mask, vel_mask = (torch.from_numpy(np.stack(t)) for t in zip(*targets))
        out.append({"lidar_bev": torch.rand(lidar.shape, generator=gen),
                    "images": torch.randn(images.shape, generator=gen),
                    "cam_grid": torch.rand(grid.shape, generator=gen) * 2 - 1,
                    "presence": torch.ones(batch_size, 2), "heatmap": heat, "regression": reg,
                    "reg_mask": reg_mask, "vel_mask": vel_mask,
                    "index": torch.arange(batch_size) + i * batch_size})
    return out


def _model(cfg, dead=False):
    torch.manual_seed(0)
    model = FusionDetector(cfg).eval()
    if dead:
        bn = dict(model.named_modules())[DEAD_BN]
        with torch.no_grad():
            bn.weight.zero_()
            bn.bias.zero_()
    return model


@pytest.fixture(scope="module")
def ctx(cfg):
    return PruneContext(_model(cfg), cfg, _batches(cfg), train_set=None)


@pytest.fixture(scope="module")
def dead_ctx(cfg):
    return PruneContext(_model(cfg, dead=True), cfg, _batches(cfg), train_set=None)


def _spearman(a, b):
    def ranks(x):
        values, inverse = np.unique(x, return_inverse=True)
        order = np.argsort(x, kind="stable")
        r = np.empty(len(x))
        r[order] = np.arange(len(x))
        return np.array([r[inverse == i].mean() for i in range(len(values))])[inverse]
    return float(np.corrcoef(ranks(a), ranks(b))[0, 1])


def test_the_distortion_counts_regression_only_at_the_dense_object_centres():
    """Heatmaps count everywhere; regression only at the dense heatmap's peaks at or above 0.5 (one object here):
    not at its neighbour (above 0.5, not a peak), not at a weak peak (0.38), not in the background."""
    heat = torch.full((1, 10, 8, 8), -5.0)
    heat[0, 3, 2, 5] = 3.0  # the object's centre
    heat[0, 3, 2, 4] = 1.0  # its neighbour
    heat[0, 1, 6, 6] = -0.5  # a weak peak
    reg = torch.randn(1, 10, 8, 8, generator=torch.Generator().manual_seed(0))
    dense = dense_outputs(heat, reg)
    assert dense.mask.sum() == 1 and dense.mask[0, 0, 2, 5] == 1
    outside = reg.clone()
    outside[0, :, 2, 4] += 1.0
    outside[0, :, 6, 6] += 1.0
    outside[0, :, 0, 0] += 1.0
    assert distortion(heat, outside, dense).item() == 0.0
    at_object = reg.clone()
    at_object[0, 7, 2, 5] += 0.5
    assert distortion(heat, at_object, dense).item() == pytest.approx(0.25)
    background = heat.clone()
    background[0, 0, 0, 0] = 0.0
    assert distortion(background, reg, dense).item() == pytest.approx((0.5 - torch.sigmoid(torch.tensor(-5.0))) ** 2)


@pytest.mark.parametrize("unit", ["lidar.out.0", "camera.neck.smooth.0", "bev.out.0"])
def test_hessian_curve_is_monotone_and_rank_correlates_with_the_forward_curve(ctx, unit):
    model = ctx.model
    before = {k: v.clone() for k, v in model.state_dict().items()}
    grads = objective_gradients(model, ctx.calibration)
    kappa = float(torch.cat([g.flatten() for g in grads.values()]).pow(2).mean())
    ratios = np.arange(20) / 20
    u = next(u for u in prunable_units(model) if u.name == unit)
    hessian = hessian_curve(u.weight, grads[unit], kappa, ratios)
    measured = forward_curve(model, ctx, unit, ratios, scores=(u.weight.detach() * grads[unit]).abs())
    assert np.all(np.diff(hessian) >= 0)
    assert measured[0] == 0.0 and measured[-1] > 0
    assert _spearman(hessian, measured) > 0.8
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # weights restored


def test_dm3d_on_the_small_detector(ctx):
    units = prunable_units(ctx.model)
    plan = build_method("dm3d").plan(ctx, Target(PARAMS, 0.5), "unstructured")
    assert set(plan.allocation.keep) == set(plan.scores.weights) == {u.name for u in units}
    assert all(plan.scores.weights[u.name].shape == u.weight.shape for u in units)
    assert abs(plan.info["realised_sparsity"] - 0.5) <= 0.005
    assert 0 < plan.info["flops_kept"] < 1 and plan.info["kappa"] > 0
    assert set(plan.info["sparsity_by_modality"]) == {"camera", "lidar", "fusion", "head"}
    masks = unstructured_masks(ctx.model, plan.scores, 0.5, plan.allocation.keep)
    removed = sum(int((~m).sum()) for m in masks.values()) / prunable_params(ctx.model)
    assert abs(removed - 0.5) <= 0.006
    # The Lagrangian reaches only the vertices of the curves' convex hull: within the variant's tolerance, not the
    # bisection's 0.005.
    lagrangian = dm3d(steps=50, allocator="lagrangian").plan(ctx, Target(PARAMS, 0.7), "unstructured")
    assert abs(lagrangian.info["realised_sparsity"] - 0.7) <= SPARSITY_TOLERANCE


def test_a_time_target_cuts_where_the_time_goes():
    """Two units with the same distortion curves and parameters: one conv's measured time falls with its width,
    the other's does not. A FLOPs budget cannot tell them apart; the time budget cuts only the one that pays."""
    ratios = np.linspace(0.0, 0.9, 10)
    curves = {"falls": ratios ** 2, "flat": ratios ** 2}
    ms = {"falls": 1.0 - 0.8 * ratios, "flat": np.full(10, 1.0)}
    choice, budget = allocate_for_time(curves, ratios, ms, 0.2)
    assert budget == pytest.approx(1.6) and choice["flat"] == 0.0 and choice["falls"] == pytest.approx(0.5)
    with pytest.raises(UserError, match="36% cut at most"):
        allocate_for_time(curves, ratios, ms, 0.5)


def test_dm3d_under_a_measured_latency_budget(ctx):
    """A time target on the small detector: the table is measured and recorded, and the allocation keeps at most
    the requested share of the units' time (no cut asked: the least-distortion allocation, every unit kept)."""
    plan = dm3d(steps=50).plan(ctx, Target(TIME, 0.0), "channel")
    info = plan.info
    assert info["cost"] == "latency" and 0 < info["unit_ms_kept"] <= 1.0
    assert plan.allocation.sparsity == info["realised_sparsity"]  # the granularity prunes what the time costs
    assert set(info["unit_ms"]) == set(info["phi"]) and len(info["unit_ms_phis"]) == 10
    with pytest.raises(UserError, match="dm3d has no option 'cost'"):
        build_method("dm3d", cost="latency")


@pytest.mark.parametrize("scale,kappa_scale", [("hessian", 0.0), ("forward", 1.0)])
def test_dm3d_prunes_units_that_do_not_influence_the_output_the_most(dead_ctx, scale, kappa_scale):
    """A dead unit's curve is zero, so pruning it is free and it goes to the top ratio: on the raw Hessian curves
    only without the damping term (kappa > 0 still charges |w|^2, and under a FLOPs budget a cheap dead unit may
    stay); on the forward-scaled curves with it too, because the measured distortion of a dead unit is 0."""
    scores = dm3d(kappa_scale=kappa_scale, scale=scale).plan(dead_ctx, Target(PARAMS, 0.5), "unstructured")
    phi = scores.info["phi"]
    assert all(phi[n] == max(phi.values()) == 0.99 for n in DEAD_UNITS)
    if scale == "forward":
        assert all(scores.info["scale_factors"][n] == 0.0 for n in DEAD_UNITS)


def test_forward_scale_puts_the_hessian_curves_on_the_measured_scale(ctx):
    """Scaled at phi = 0.5, each unit's curve equals the forward-measured distortion there (a second, independent
    measurement: `forward_curve`), and at phi = 0.8 the scaled curves are closer to the measured ones across units
    than the raw curves (median |log ratio|), i.e. the factor fixes the scale and the Hessian shape carries it."""
    model = ctx.model
    c = distortion_curves(model, ctx.calibration, ctx.cfg, steps=20)
    factors = forward_scale(model, ctx.calibration, c, phi_ref=0.5)
    raw_err, scaled_err = [], []
    for u in prunable_units(model):
        measured = forward_curve(model, ctx, u.name, [0.5, 0.8], scores=(c.weights[u.name] * c.grads[u.name]).abs())
        np.testing.assert_allclose(c.curves[u.name][10] * factors[u.name], measured[0], rtol=1e-5)
        raw_err.append(abs(np.log(c.curves[u.name][16] / measured[1])))
        scaled_err.append(abs(np.log(c.curves[u.name][16] * factors[u.name] / measured[1])))
    assert np.median(scaled_err) < np.median(raw_err)
    assert np.median(scaled_err) < np.log(3)


def test_mmprune4u_on_the_small_detector(ctx):
    units = prunable_units(ctx.model)
    before = {k: v.clone() for k, v in ctx.model.state_dict().items()}
    method = mmprune4u(regularise=True)
    scores = method.plan(ctx, Target(PARAMS, 0.5), "unstructured")
    assert all(torch.equal(v, ctx.model.state_dict()[k]) for k, v in before.items())
    keep = scores.allocation.keep
    assert set(keep) == {u.name for u in units}
    assert all(np.isclose(1 - keep[u.name], GRID).any() for u in units)
    kept = sum(keep[u.name] * u.numel for u in units)
    assert 0.48 * prunable_params(ctx.model) <= kept <= 0.5 * prunable_params(ctx.model)
    modality_keep = scores.info["keep_by_modality"]
    assert modality_keep["camera"] != modality_keep["lidar"]
    assert min(scores.info["ffi_dense"].values()) > 0
    # the optional information regulariser: 2 gamma on the dense model, differentiable w.r.t. the weights
    ctx.model.zero_grad(set_to_none=True)
    term = method.loss.bind(ctx, ctx.model)(ctx.model, ctx.calibration[0], None)
    assert term.item() == pytest.approx(2.0, rel=0.3)
    term.backward()
    grad = dict(ctx.model.named_modules())["fuser.conv.0"].weight.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
    ctx.model.zero_grad(set_to_none=True)


def test_mmprune4u_channel_curves_price_whole_channels(ctx):
    """Under channel granularity with `channel_curves`, the curves are measured with whole output channels removed
    (only then: unstructured keeps the weight curves), which changes the allocation; the budget is still met."""
    target = Target(PARAMS, 0.5)
    weights = mmprune4u(curve_batches=1).plan(ctx, target, "channel")
    channels = mmprune4u(curve_batches=1, channel_curves=True).plan(ctx, target, "channel")
    assert (weights.info["curves"], channels.info["curves"]) == ("weights", "channels")
    assert mmprune4u(curve_batches=1, channel_curves=True).plan(ctx, target, "unstructured").info["curves"] == "weights"
    assert channels.info["phi"] != weights.info["phi"]
    kept = sum(channels.allocation.keep[u.name] * u.numel for u in prunable_units(ctx.model))
    assert 0.48 * prunable_params(ctx.model) <= kept <= 0.5 * prunable_params(ctx.model)


def test_curve_shapes_are_zero_for_dead_units_and_restore_the_model(dead_ctx):
    """A unit whose output the network ignores costs nothing either way; live units cost something at the top of
    the grid; the model comes back unchanged; the report has a row per phi and per unit."""
    before = {k: v.clone() for k, v in dead_ctx.model.state_dict().items()}
    result = {"grid": [0.5, 0.95], "curves": measure_curve_shapes(dead_ctx.model, dead_ctx.calibration[:1],
                                                                  (0.5, 0.95), quiet=True)}
    assert all(torch.equal(v, dead_ctx.model.state_dict()[k]) for k, v in before.items())
    curves = result["curves"]
    assert set(curves) == {u.name for u in prunable_units(dead_ctx.model)}
    for name in DEAD_UNITS:
        assert curves[name] == {"weights": [0.0, 0.0], "channels": [0.0, 0.0]}
    live = [n for n in curves if n not in DEAD_UNITS]
    assert all(curves[n]["weights"][1] > 0 and curves[n]["channels"][1] > 0 for n in live)
    lines = format_curve_shapes(result)
    assert len(lines) == 2 + 2 + 3 + 2 + len(curves)  # phi table, note, unit table


def test_allocation_distortion_is_additive_for_one_unit_and_zero_for_dead_units(dead_ctx):
    model, batches = dead_ctx.model, dead_ctx.calibration[:1]
    dead = allocation_distortion(model, batches, {n: 1 for n in DEAD_UNITS})
    assert dead["summed"] == dead["joint"] == 0.0
    one = allocation_distortion(model, batches, {"fuser.conv.0": 2, **{n: 1 for n in DEAD_UNITS}})
    assert one["joint"] == pytest.approx(one["summed"]) and one["summed_by_modality"]["fusion"] == one["summed"] > 0


def test_mmprune4u_prunes_units_that_do_not_influence_the_output_the_most(dead_ctx):
    method = build_method("mmprune4u", curve_batches=1)
    scores = method.plan(dead_ctx, Target(PARAMS, 0.5), "unstructured")
    phi = scores.info["phi"]
    assert scores.info["curve_batches"] == 1 and method.loss is None  # off by default
    assert all(phi[n] == max(phi.values()) == GRID[-1] for n in DEAD_UNITS)
