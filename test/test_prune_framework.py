"""The pruning framework's interfaces: the registry of methods, each method's composition (weight update ->
importance -> allocator -> granularity -> fine-tuning loss) on the small detector, allocators against their
budgets, and parameter vs time targets from the spec to the variant's name and manifest."""
import copy
import json

import numpy as np
import pytest
import torch
import torch_pruning as tp

from fusion_prune_ros.errors import UserError
from fusion_prune_ros.export.manifest import Manifest
from fusion_prune_ros.model.flops import example_inputs
from fusion_prune_ros.prune.allocation import Allocation
from fusion_prune_ros.prune.granularity import MIN_KEEP, ScoreImportance, group_ratios, unstructured_masks
from fusion_prune_ros.prune.latency_table import COARSE, LatencyTable, pruned_width
from fusion_prune_ros.prune.method import EXTRA_OPTIMISER_STEPS, Method, Plan
from fusion_prune_ros.prune.methods import dm3d as dm3d_module
from fusion_prune_ros.prune.methods.alter_eva import Stage, channel_alter_eva
from fusion_prune_ros.prune.methods.baselines import MagnitudeImportance
from fusion_prune_ros.prune.methods.reactivation import reactivated
from fusion_prune_ros.prune.registry import build_method, check_target, known_methods
from fusion_prune_ros.prune.target import PARAMS, TIME, Target
from fusion_prune_ros.prune.units import prunable_params, prunable_units, weights_of
from fusion_prune_ros.prune.variant import PruneConfig, PruneSpec, _apply, check_spec, prune_variant
from small_prune_context import one_thread, small_prune_context  # noqa: F401 (one_thread: a fixture)

# Options that keep every method's steps short on the small detector; the code paths are the defaults'.
QUICK = {"altermoma": {"reactivation_steps": 2}, "altermoma-deci-weighted": {"reactivation_steps": 2}, "crossprune": {"admm_rounds": 2, "steps_per_round": 2},
         "crossprune-distil": {"admm_rounds": 2, "steps_per_round": 2},
         "dm3d": {"steps": 20}, "mmprune4u": {"curve_batches": 1, "regularise": True}}

# The optimiser steps QUICK gives each method's own optimisation: two reactivations of 2 steps, 2 ADMM rounds of 2.
EXTRA_STEPS = {"altermoma": 4, "altermoma-deci-weighted": 4, "crossprune": 4, "crossprune-distil": 4}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def ctx():
    return small_prune_context()


def proportional_table(model, inputs, phis=COARSE, round_to=8, **_):
    """A latency table whose unit times fall with the width (0.1 ms fixed + 1 ms at full width): what the measured
    one looks like, without timing anything."""
    ms, widths = {}, {}
    for u in prunable_units(model):
        out = u.module.out_channels
        widths[u.name] = [pruned_width(out, float(p), round_to) for p in phis]
        ms[u.name] = np.array([0.1 + w / out for w in widths[u.name]])
    return LatencyTable(tuple(float(p) for p in phis), ms, widths)


def removed_by(keep: dict, model) -> float:
    """The fraction of prunable parameters that per-unit keep ratios remove."""
    units = prunable_units(model)
    return sum((1 - keep[u.name]) * u.numel for u in units) / sum(u.numel for u in units)


# ---- the registry ------------------------------------------------------------------------------------------------


def test_the_registry_rejects_unknown_methods_and_options_naming_the_known_ones():
    assert known_methods() == ["altermoma", "altermoma-deci-weighted", "crossprune", "crossprune-distil", "dm3d",
                               "magnitude",
                               "mmprune4u", "random", "snip", "taylor"]
    with pytest.raises(UserError, match="unknown pruning method 'l1': expected one of altermoma, altermoma-deci-weighted, crossprune"):
        build_method("l1")
    with pytest.raises(UserError, match="dm3d has no option 'cost': expected one of steps, kappa_scale, allocator"):
        build_method("dm3d", cost="latency")
    with pytest.raises(UserError, match="magnitude has no option 'gamma': it takes none"):
        build_method("magnitude", gamma=1.0)
    assert isinstance(build_method("crossprune", gamma=0.5), Method)


def test_every_method_fine_tunes_with_the_task_loss_alone_but_crossprune_distil():
    """Equal fine-tuning: no method adds a term to the loss by default; CrossPrune's distillation is its own
    method."""
    assert {name: build_method(name).loss is not None for name in known_methods()} == \
        {name: name == "crossprune-distil" for name in known_methods()}


def test_only_methods_with_a_time_allocator_take_a_time_target():
    check_target("dm3d", Target(TIME, 0.3))
    with pytest.raises(UserError, match="magnitude cannot prune to a time target: dm3d can"):
        check_target("magnitude", Target(TIME, 0.3))
    with pytest.raises(UserError, match="cannot meet a time target"):
        Method(MagnitudeImportance()).plan(None, Target(TIME, 0.3), "channel")
    with pytest.raises(ValueError, match="target kind"):
        Target("flops", 0.3)


# ---- every method's composition ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", known_methods())
def test_each_method_composition_prunes_the_small_detector(ctx, name):
    """The steps run in order on the same context: the update's weights are what the importance scores and the
    granularity prunes, the channel-pruned network meets the allocation's parameter fraction and still runs, the
    fine-tuning loss binds to it and trains it, and the dense model is left as it was."""
    before = copy.deepcopy(ctx.model.state_dict())
    method = build_method(name, **QUICK.get(name, {}))
    plan = method.plan(ctx, Target(PARAMS, 0.5), "channel")
    units = {u.name: u.weight.shape for u in prunable_units(ctx.model)}
    assert {n: s.shape for n, s in plan.scores.weights.items()} == units
    assert all(torch.isfinite(s).all() for s in plan.scores.weights.values())
    assert plan.info["composition"]["importance"] == type(method.importance).__name__
    json.dumps(plan.info)  # goes into the variant manifest
    if method.update is not None:
        moved = weights_of(plan.model)
        assert plan.model is not ctx.model and any(not torch.equal(moved[n], before[n + ".weight"]) for n in moved)
        assert all(torch.equal(plan.scores.weights[n], moved[n].abs()) for n in moved)  # |W| of the moved weights
    else:
        assert plan.model is ctx.model
    assert plan.info[EXTRA_OPTIMISER_STEPS] == EXTRA_STEPS.get(name, 0)  # QUICK's steps, one key for every method
    pruned, masks, structure = _apply(plan, PruneSpec(name, 0.5, "channel"), PruneConfig(round_to=0), ctx.cfg)
    assert masks is None and abs(structure["realised_sparsity"] - plan.allocation.sparsity) <= 0.03
    pruned.train()
    if method.loss is not None:
        term = method.loss.bind(ctx, pruned)(pruned, ctx.calibration[0], None)
        assert term.dim() == 0 and torch.isfinite(term)
        term.backward()
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in pruned.parameters())
    heat, reg = pruned(*(torch.as_tensor(ctx.calibration[0][k]) for k in
                         ("lidar_bev", "images", "cam_grid", "presence")))
    assert heat.shape[1] == 10 and torch.isfinite(heat).all() and torch.isfinite(reg).all()
    assert all(torch.equal(v, ctx.model.state_dict()[k]) for k, v in before.items())


# ---- allocators and their budgets --------------------------------------------------------------------------------


def test_the_global_threshold_hands_the_whole_target_to_the_granularity(ctx):
    plan = build_method("magnitude").plan(ctx, Target(PARAMS, 0.4), "unstructured")
    assert plan.allocation.sparsity == 0.4 and plan.allocation.keep is None
    masks = unstructured_masks(ctx.model, plan.scores, plan.allocation.sparsity, plan.allocation.keep)
    assert sum(int((~m).sum()) for m in masks.values()) == round(0.4 * prunable_params(ctx.model))


def test_layer_adaptive_allocators_stay_within_their_budgets(ctx, monkeypatch):
    """DM3D meets a parameter target within its 0.5 % tolerance, and a time target by keeping at most the allowed
    share of the units' time, handing on the parameter fraction that costs; MMPrune4U's knapsack never spends more
    parameters than the budget leaves."""
    dm3d = build_method("dm3d", steps=20)
    params = dm3d.plan(ctx, Target(PARAMS, 0.6), "unstructured").allocation
    assert params.sparsity == 0.6 and abs(removed_by(params.keep, ctx.model) - 0.6) <= 0.005
    monkeypatch.setattr(dm3d_module, "latency_table", proportional_table)
    timed = dm3d.plan(ctx, Target(TIME, 0.3), "channel").allocation
    table = proportional_table(ctx.model, None, round_to=8)
    phi = {n: 1 - k for n, k in timed.keep.items()}
    assert table.total(phi) <= 0.7 * table.total({n: 0.0 for n in phi}) + 1e-9
    assert timed.sparsity == round(removed_by(timed.keep, ctx.model), 4) > 0
    assert timed.info["cost"] == "latency" and params.info["cost"] == "flops"
    mm = build_method("mmprune4u", curve_batches=1).plan(ctx, Target(PARAMS, 0.5), "unstructured").allocation
    assert mm.sparsity == 0.5 and 0.5 <= removed_by(mm.keep, ctx.model) <= 0.52


# ---- parameter and time targets ----------------------------------------------------------------------------------


def test_the_spec_names_its_target_and_rejects_a_time_target_it_cannot_meet():
    assert PruneSpec("dm3d", 0.3, "channel").name == "dm3d-channel-30-s0"
    timed = PruneSpec("dm3d", None, "channel", 1, time_target=0.3)
    assert timed.name == "dm3d-channel-t30-s1" and timed.target == Target(TIME, 0.3)
    check_spec(timed)
    for spec, message in ((PruneSpec("dm3d", 0.3, "channel", time_target=0.3), "give one target"),
                          (PruneSpec("dm3d", None, "channel"), "give one target"),
                          (PruneSpec("dm3d", None, "channel", time_target=1.2), "time target must be in"),
                          (PruneSpec("magnitude", None, "channel", time_target=0.3), "dm3d can"),
                          (PruneSpec("dm3d", None, "unstructured", time_target=0.3), "granularity channel")):
        with pytest.raises(UserError, match=message):
            check_spec(spec)


def test_a_time_target_variant_records_the_time_and_the_parameters_it_cost(shipped, tmp_path, monkeypatch):
    monkeypatch.setattr(dm3d_module, "latency_table", proportional_table)
    pcfg = PruneConfig(calibration_frames=4, calibration_batch=2, finetune_steps=2, finetune_batch=2,
                       latency_iterations=2, conditions=("fused",), round_to=0,
                       method_options={"dm3d": {"steps": 20, "scale": "hessian"}})
    spec = PruneSpec("dm3d", None, "channel", time_target=0.3)
    manifest = prune_variant(shipped / "models" / "model.pt", spec, pcfg, tmp_path, quiet=True)
    assert manifest.name == "dm3d-channel-t30-s0" and (tmp_path / manifest.name / "fused.onnx").is_file()
    assert Manifest.read(tmp_path / manifest.name).time_target == 0.3
    assert manifest.sparsity == manifest.scoring["parameter_target"] == manifest.scoring["realised_sparsity"]
    assert abs(manifest.sparsity_realised["overall"] - manifest.sparsity) <= 0.03


class Interrupted(Exception):
    pass


def test_a_resumed_variant_binds_its_fine_tuning_loss_to_the_network_pruned_before(shipped, tmp_path, monkeypatch):
    """Interrupted after pruning, a variant resumes from the saved pruned network: the method's steps do not run
    again, and its fine-tuning loss is bound to that network before fine-tuning."""
    import fusion_prune_ros.prune.variant as variant

    pcfg = PruneConfig(calibration_frames=4, calibration_batch=2, finetune_steps=2, finetune_batch=2,
                       latency_iterations=2, conditions=("fused",), round_to=0,
                       method_options={"crossprune-distil": {"admm_rounds": 1, "steps_per_round": 1}})
    spec, dense = PruneSpec("crossprune-distil", 0.5, "channel"), shipped / "models" / "model.pt"
    fit = variant.fit

    def interrupted(*args, **kwargs):
        raise Interrupted

    monkeypatch.setattr(variant, "fit", interrupted)
    with pytest.raises(Interrupted):
        prune_variant(dense, spec, pcfg, tmp_path, quiet=True)
    saved = torch.load(tmp_path / spec.name / "pruned.pt", weights_only=False)["scoring"]
    bound = []
    monkeypatch.setattr(variant, "fit", lambda model, *a, hooks, **k: bound.append(hooks.regulariser) or
                        fit(model, *a, hooks=hooks, **k))
    monkeypatch.setattr(Method, "plan", lambda *a: pytest.fail("the method's steps ran again"))
    manifest = prune_variant(dense, spec, pcfg, tmp_path, quiet=True)
    assert manifest.scoring == saved
    assert manifest.finetune["regulariser"] and bound[0].channels is not None  # matched to the pruned widths


# ---- the realised sparsity ---------------------------------------------------------------------------------------


def test_a_cut_allocated_to_a_non_root_group_member_shrinks_the_group(ctx):
    """camera stage 3's conv2 shares its output channels with the block's shortcut (a residual add), and the
    shortcut roots that group: a deep cut allocated to conv2 alone must narrow the group, shortcut included."""
    keep = {u.name: 1.0 for u in prunable_units(ctx.model)}
    keep["camera.backbone.stage3.conv2.0"] = 0.1
    scores = build_method("magnitude").importance(ctx)
    plan = Plan(ctx.model, scores, Allocation(removed_by(keep, ctx.model), keep))
    _, _, info = _apply(plan, PruneSpec("dm3d", 0.3, "channel"), PruneConfig(round_to=0), ctx.cfg)
    widths = info["channels"]
    assert widths["camera.backbone.stage3.conv2.0"] == widths["camera.backbone.stage3.shortcut.0"] < 16
    assert all(widths[n] == 16 for n in ("fuser.conv.0", "lidar.out.0", "bev.out.0"))  # uncut groups stay whole


def test_group_ratios_weigh_every_member_by_its_parameters():
    members = {"shortcut": {"shortcut": 100, "conv2": 300}, "alone": {"alone": 50}}
    ratios = group_ratios(members, {"shortcut": 1.0, "conv2": 0.25, "alone": 0.81}, 1.0)
    assert ratios == pytest.approx({"shortcut": 300 * 0.5 / 400, "alone": 0.1})
    assert group_ratios(members, {"conv2": 0.0}, 10.0)["shortcut"] == 1 - MIN_KEEP


@pytest.fixture(scope="module")
def plans(ctx):
    """Every method's plan at 30 and 50 %, channel granularity (the quick options)."""
    return {(name, level): build_method(name, **QUICK.get(name, {})).plan(ctx, Target(PARAMS, level), "channel")
            for name in known_methods() for level in (0.3, 0.5)}


@pytest.mark.parametrize("level", (0.3, 0.5))
@pytest.mark.parametrize("name", known_methods())
def test_every_method_realises_its_channel_target_within_one_percent(ctx, plans, name, level):
    plan = plans[(name, level)]
    _, _, info = _apply(plan, PruneSpec(name, level, "channel"), PruneConfig(round_to=0), ctx.cfg)
    assert abs(info["realised_sparsity"] - level) <= 0.01, info


def test_a_variant_that_misses_its_target_is_an_error_naming_both(ctx):
    """Widths in multiples of 16 leave the small detector's 16-channel groups nothing to give."""
    plan = build_method("magnitude").plan(ctx, Target(PARAMS, 0.3), "channel")
    with pytest.raises(UserError, match=r"realised sparsity 0\.0000 misses the target 0\.3000"):
        _apply(plan, PruneSpec("magnitude", 0.3, "channel"), PruneConfig(round_to=16), ctx.cfg)


# ---- the random baseline -----------------------------------------------------------------------------------------


def test_random_channels_are_one_uniform_draw_per_output_channel_and_weights_stay_per_weight(ctx):
    scores = build_method("random").importance(ctx)
    draws = []
    for u in prunable_units(ctx.model):
        per_channel = scores.for_channels()[u.name]
        out_dim = 1 if isinstance(u.module, torch.nn.ConvTranspose2d) else 0
        flat = per_channel.movedim(out_dim, 0).flatten(1)
        assert torch.equal(flat, flat[:, :1].expand_as(flat)), u.name  # one score for every weight of a channel
        draws.append(flat[:, 0])
        assert len(scores.weights[u.name].unique()) > u.weight.shape[out_dim]  # per weight where weights are pruned
    draws = torch.cat(draws)
    # i.i.d. uniform: the pooled draws against U(0, 1) (Kolmogorov-Smirnov at the 0.1 % level)
    ecdf = torch.arange(1, len(draws) + 1) / len(draws)
    assert float((ecdf - draws.sort().values).abs().max()) < 1.95 / len(draws) ** 0.5


def test_random_channel_ranking_within_a_group_is_its_draws_own(ctx):
    """lidar.out's group removes its output channels and fuser.conv's matching input weights: the group's channel
    importance must order the channels as lidar.out's draws do, whatever fuser.conv's weights score."""
    scores = build_method("random").importance(ctx)
    model = copy.deepcopy(ctx.model)
    modules = dict(model.named_modules())
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=example_inputs(ctx.cfg)["fused"])
    group = graph.get_pruning_group(modules["lidar.out.0"], tp.prune_conv_out_channels, idxs=list(range(16)))
    importance = ScoreImportance({modules[n]: s for n, s in scores.for_channels().items()})(group)
    draws = scores.for_channels()["lidar.out.0"][:, 0, 0, 0]
    assert torch.equal(torch.argsort(importance), torch.argsort(draws))


# ---- AlterMOMA -----------------------------------------------------------------------------------------------------


def test_reactivation_trains_with_plain_sgd_and_leaves_batchnorm_statistics_alone(ctx, monkeypatch):
    made = []
    sgd = torch.optim.SGD

    def spy(params, **kwargs):
        made.append(kwargs)
        return sgd(params, **kwargs)

    monkeypatch.setattr(torch.optim, "SGD", spy)
    monkeypatch.setattr(torch.optim, "Adam", None)  # any other optimiser fails the test
    trained = reactivated(ctx.model, ctx.train_set, "camera", 2, 1e-3, 4, 0)
    assert made == [{"lr": 1e-3, "momentum": 0.0}]
    dense = ctx.model.state_dict()
    stats = [k for k in dense if k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    assert stats and all(torch.equal(trained.state_dict()[k], dense[k]) for k in stats)
    moved = [k for k in dense if k.endswith(".weight") and not torch.equal(trained.state_dict()[k], dense[k])]
    assert moved  # the weights did train


def test_altermoma_channel_scores_are_per_channel_terms_normalised_over_the_module():
    """Two camera units, one channel each of two weights: DeCI_c = |sum theta0 g| (signs cancel within a channel),
    ReRI_c = |sum before - sum after|, each divided by its module's sum over channels."""
    contribution = {"a": torch.tensor([[1.0, -1.0], [2.0, 1.0]]), "b": torch.tensor([[1.0, 0.0]])}
    stage = Stage({"a": torch.tensor([[1.0, 1.0], [0.0, 0.0]]), "b": torch.tensor([[2.0, 0.0]])},
                  {"a": torch.tensor([[0.0, 0.0], [0.0, 0.0]]), "b": torch.tensor([[2.0, 0.0]])}, 0.0)
    modules, dims = {"a": "camera", "b": "camera"}, {"a": 0, "b": 0}
    scores = channel_alter_eva(contribution, stage, stage, modules, dims, 1.0, 1.0)
    # DeCI: a -> (0, 3), b -> (1,), sum 4; ReRI: a -> (2, 0), b -> (0,), sum 2
    assert torch.allclose(scores["a"], torch.tensor([0 / 4 - 2 / 2, 3 / 4 - 0.0]))
    assert torch.allclose(scores["b"], torch.tensor([1 / 4 - 0.0]))


def test_altermoma_hands_the_channel_granularity_one_score_per_output_channel(ctx):
    scores = build_method("altermoma", reactivation_steps=2).importance(ctx)
    for u in prunable_units(ctx.model):
        flat = scores.for_channels()[u.name].movedim(1 if isinstance(u.module, torch.nn.ConvTranspose2d) else 0,
                                                       0).flatten(1)
        assert torch.equal(flat, flat[:, :1].expand_as(flat)), u.name
    assert scores.info["alpha"] == scores.info["beta"] == 1.0
    assert build_method("altermoma-deci-weighted", reactivation_steps=2).importance.beta == 0.5
