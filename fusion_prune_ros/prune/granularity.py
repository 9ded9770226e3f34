"""Scores and an allocation -> a pruned model at one of three granularities (docs/pruning.md, "The framework").

The allocation arrives as the fraction of prunable parameters to remove and, from a layer-adaptive allocator, each
unit's keep ratio (allocation.Allocation); without keep ratios the granularity ranks all scores globally itself.

- unstructured: the lowest-scoring weights are zeroed (one global threshold, or top-k per unit when a
  layer-adaptive allocator chose each unit's keep ratio); masks stay fixed during fine-tuning.
- nm24: in every group of four consecutive input-channel weights (a conv weight viewed as K x R x S x C), the two
  lowest-scoring are zeroed: the 2:4 layout of NVIDIA's sparse tensor cores (ASP), 50 % of each unit.
- channel: output channels are removed physically with Torch-Pruning, which follows every dependency (residual
  adds, BatchNorm, ConvTranspose, the camera features through grid_sample into the lift conv) and slices all
  members of a group together. A channel's importance is the mean score of all weights its removal deletes across
  the group: loss change per parameter saved, which ranks channels of different fan-in fairly under a parameter
  budget. The global ratio is found by bisection so that the requested fraction of prunable parameters goes.
  Per-unit keep ratios become one channel ratio per dependency group, the parameter-weighted mean of its members'
  ratios (`group_ratios`): a group's channels are the output channels of every conv in it, so a cut allocated to
  any member is a cut of the whole group.
"""
from __future__ import annotations

import copy
import math

import torch
import torch_pruning as tp
from torch import nn

from .importance import Scores
from .units import dense_layers, prunable_params, prunable_units

GRANULARITIES = ("channel", "nm24", "unstructured")
MIN_KEEP = 0.05  # every dependency group keeps at least this fraction of its channels (and at least one)


# ---- masks -----------------------------------------------------------------------------------------------------


def unstructured_masks(model: nn.Module, scores: Scores, sparsity: float, keep: dict | None = None) -> dict:
    """unit name -> bool mask (True = keep) removing `sparsity` of all prunable weights, or with per-unit keep
    ratios (`keep`, unit name -> ratio) each unit's top-scoring fraction."""
    units = prunable_units(model)
    if keep is not None:
        return {u.name: _top_k_mask(scores.weights[u.name], round(keep[u.name] * u.numel)) for u in units}
    flat = torch.cat([scores.weights[u.name].flatten().float() for u in units])
    n_prune = int(round(sparsity * flat.numel()))
    if n_prune == 0:
        return {u.name: torch.ones_like(u.weight, dtype=torch.bool) for u in units}
    threshold = torch.kthvalue(flat, n_prune).values
    masks, pruned = {}, 0
    for u in units:
        s = scores.weights[u.name].float()
        masks[u.name] = s > threshold
        pruned += int((~masks[u.name]).sum())
    # Ties at the threshold: release the surplus so the realised sparsity is exact.
    surplus = pruned - n_prune
    for u in units:
        if surplus <= 0:
            break
        tied = (~masks[u.name]) & (scores.weights[u.name].float() == threshold)
        idx = tied.flatten().nonzero().flatten()[:surplus]
        masks[u.name].view(-1)[idx] = True
        surplus -= len(idx)
    return masks


def _top_k_mask(score: torch.Tensor, k: int) -> torch.Tensor:
    mask = torch.zeros(score.numel(), dtype=torch.bool)
    if k > 0:
        mask[score.flatten().float().topk(min(k, score.numel())).indices] = True
    return mask.view(score.shape)


def nm24_masks(model: nn.Module, scores: Scores) -> dict:
    """2:4 masks along the input channels of every prunable unit (remainder groups of fewer than 4 stay dense)."""
    masks = {}
    for u in prunable_units(model):
        s = scores.weights[u.name].float()
        # Input channels last: Conv2d weight (K, C, R, S) -> (K, R, S, C); ConvTranspose2d (C, K, R, S) -> (K, R, S, C)
        perm = (1, 2, 3, 0) if isinstance(u.module, nn.ConvTranspose2d) else (0, 2, 3, 1)
        view = s.permute(*perm)
        c = view.shape[-1]
        full = (c // 4) * 4
        keep = torch.ones_like(view, dtype=torch.bool)
        if full:
            groups = view[..., :full].reshape(*view.shape[:-1], full // 4, 4)
            top = groups.topk(2, dim=-1).indices
            g = torch.zeros_like(groups, dtype=torch.bool).scatter_(-1, top, True)
            keep[..., :full] = g.reshape(*view.shape[:-1], full)
        inverse = [perm.index(i) for i in range(4)]
        masks[u.name] = keep.permute(*inverse).contiguous()
    return masks


def apply_masks(model: nn.Module, masks: dict) -> None:
    """Zero the masked weights in place (after every optimiser step during fine-tuning, too)."""
    modules = dict(model.named_modules())
    with torch.no_grad():
        for name, mask in masks.items():
            modules[name].weight.mul_(mask.to(modules[name].weight.dtype))


def is_nm24(weight: torch.Tensor, transposed: bool = False) -> bool:
    """True if every full group of four input-channel weights has at most two non-zeros."""
    view = weight.permute(1, 2, 3, 0) if transposed else weight.permute(0, 2, 3, 1)
    full = (view.shape[-1] // 4) * 4
    groups = view[..., :full].reshape(*view.shape[:-1], full // 4, 4)
    return bool(((groups != 0).sum(-1) <= 2).all())


# ---- structural (channel) pruning --------------------------------------------------------------------------------


class ScoreImportance(tp.importance.Importance):
    """A Torch-Pruning importance from per-weight scores: for each channel of a group, the mean score of the
    weights removed with it, over every conv of the group that has scores."""

    def __init__(self, scores_by_module: dict):
        self.scores = scores_by_module

    @torch.no_grad()
    def __call__(self, group) -> torch.Tensor:
        total, count = None, None
        for i, (dep, idxs) in enumerate(group):
            layer, fn = dep.layer, dep.pruning_fn
            s = self.scores.get(layer)
            if s is None:
                continue
            transposed = getattr(layer, "transposed", False)
            if fn == tp.prune_conv_out_channels:
                w = (s.transpose(0, 1) if transposed else s)[idxs].flatten(1)
            elif fn == tp.prune_conv_in_channels:
                w = (s if transposed else s.transpose(0, 1)).flatten(1)[idxs]
            else:
                continue
            root = torch.tensor(group[i].root_idxs)
            if total is None:
                n = len(group[0].root_idxs) if group[0].root_idxs else len(idxs)
                total, count = torch.zeros(n), torch.zeros(n)
            total.scatter_add_(0, root, w.float().sum(1))
            count.scatter_add_(0, root, torch.full((len(idxs),), float(w.shape[1])))
        if total is None:
            return None
        return total / count.clamp(min=1.0)


def channel_prune(model: nn.Module, scores: Scores, sparsity: float, example_inputs: tuple,
                  round_to: int | None = None, tolerance: float = 0.01, keep: dict | None = None) -> tuple:
    """A physically smaller copy of `model` with about `sparsity` of its prunable parameters removed.

    Returns (pruned model, info). With per-unit keep ratios (`keep`, from a layer-adaptive allocator), each group's
    channel ratio is its members' 1 - sqrt(keep) (a conv's parameters scale with in x out channels), weighted by
    their parameters and scaled by one factor found by bisection; otherwise one global ratio is bisected. The
    bisection stops within `tolerance` of the target or returns the closest network it found; whether that is close
    enough is the caller's call (variant.check_realised).
    """
    pruned, realised, factor, _ = _bisect(model, scores, sparsity, example_inputs, round_to, tolerance, keep)
    units = {u.name for u in prunable_units(model)}
    info = {"target_sparsity": sparsity, "realised_sparsity": round(realised, 4), "bisection_factor": round(factor, 4),
            "params_before": sum(p.numel() for p in model.parameters()),
            "params_after": sum(p.numel() for p in pruned.parameters()),
            "channels": {name: _out_channels(m) for name, m in pruned.named_modules() if name in units}}
    return pruned, info


def channel_selection(model: nn.Module, scores: Scores, sparsity: float, example_inputs: tuple,
                      round_to: int | None = None, tolerance: float = 0.01) -> dict:
    """unit name -> bool mask of its weight, False on every weight that `channel_prune` with the same arguments
    (no keep ratios) deletes: the removed channels' rows and, in the convs that consume them, their columns. The
    selection is deterministic, so `channel_prune` on the same scores removes exactly these channels."""
    return _bisect(model, scores, sparsity, example_inputs, round_to, tolerance, None)[3]


def _bisect(model: nn.Module, scores: Scores, sparsity: float, example_inputs: tuple, round_to, tolerance: float,
            keep: dict | None) -> tuple:
    """(pruned copy, realised sparsity, factor, `_prune_at`'s kept-weight masks) of the bisection `channel_prune`
    describes."""
    base_params = prunable_params(model)
    # A global ratio lives in [0, 1]; a factor on the group ratios may need to exceed 1 where many groups sit at
    # their MIN_KEEP floor and the rest must make up for them.
    lo, hi = 0.0, 1.0 if keep is None else 4.0
    best = None
    for _ in range(14 if keep is None else 24):
        mid = (lo + hi) / 2
        pruned, kept = _prune_at(model, scores, mid, example_inputs, round_to, keep)
        realised = 1 - prunable_params(pruned) / base_params
        if best is None or abs(realised - sparsity) < abs(best[1] - sparsity):
            best = (pruned, realised, mid, kept)
        if abs(realised - sparsity) <= tolerance:
            break
        lo, hi = (mid, hi) if realised < sparsity else (lo, mid)
    return best


def group_ratios(members: dict, keep: dict, factor: float) -> dict:
    """group root name -> channel ratio from per-unit keep ratios. `members`: root -> {unit name: parameters} of
    the convs whose output channels the group removes. A group's ratio is the parameter-weighted mean of its
    members' 1 - sqrt(keep) (a unit missing from `keep` keeps everything), times `factor`, at most 1 - MIN_KEEP:
    every member's allocation counts, in proportion to the parameters it holds, whichever conv roots the group."""
    ratios = {}
    for root, sizes in members.items():
        total = sum(sizes.values())
        cut = sum(n * (1 - math.sqrt(max(keep.get(name, 1.0), 0.0))) for name, n in sizes.items())
        ratios[root] = min(1 - MIN_KEEP, factor * cut / total) if total else 0.0
    return ratios


def narrowest(model: nn.Module, example_inputs: tuple) -> nn.Module:
    """A copy with every prunable group at its minimum width (MIN_KEEP of its channels): the fastest network
    channel pruning can produce here. Its latency is the floor under every channel-pruned variant; what remains
    is the part no channel pruning reaches (the stems, the camera lift, pillar scatter, the head's output convs)."""
    uniform = Scores(weights={u.name: torch.ones_like(u.weight) for u in prunable_units(model)})
    return _prune_at(model, uniform, 1.0, example_inputs, None, None)[0]


def _out_channels(module: nn.Module) -> int:
    return module.out_channels


def _prune_at(model: nn.Module, scores: Scores, factor: float, example_inputs: tuple, round_to,
              keep: dict | None) -> tuple:
    """(pruned copy of `model`, unit name -> bool mask of the dense weight, False where the pruning deleted it).
    With per-unit keep ratios, each group loses its members' ratio (group_ratios, scaled by `factor`); otherwise
    the `factor` fraction of all channels with the lowest importance, ranked across groups. Every group keeps at
    least MIN_KEEP of its channels, and widths are multiples of `round_to` when given.

    (Groups are pruned one by one through DependencyGraph.get_pruning_group rather than MetaPruner's global mode,
    so that ranking, per-group limits and rounding are explicit and testable.)"""
    pruned = copy.deepcopy(model).eval()
    modules = dict(pruned.named_modules())
    names = {m: n for n, m in modules.items()}
    importance = ScoreImportance({modules[n]: s for n, s in scores.for_channels().items() if n in modules})
    kept = {n: torch.ones_like(modules[n].weight, dtype=torch.bool) for n in scores.weights if n in modules}
    graph = tp.DependencyGraph().build_dependency(pruned, example_inputs=example_inputs)
    ignored = [modules[n] for n in dense_layers(pruned)]
    plans, members = [], {}
    for group in graph.get_all_groups(ignored_layers=ignored, root_module_types=[nn.Conv2d, nn.ConvTranspose2d]):
        imp = importance(group)
        if imp is None:
            continue
        root = group[0].dep.target.module
        plans.append((root, group[0].dep.handler, imp, names[root]))
        members[names[root]] = {names[d.layer]: d.layer.weight.numel() for d, _ in group
                                if d.pruning_fn == tp.prune_conv_out_channels and names[d.layer] in scores.weights}
    sizes = {name: len(imp) for _, _, imp, name in plans}
    if keep is not None:
        counts = dithered_counts(group_ratios(members, keep, factor), sizes, round_to)
    else:
        everything = torch.cat([imp for _, _, imp, _ in plans])
        k = int(factor * len(everything))
        threshold = torch.kthvalue(everything, k).values if k > 0 else -math.inf
        counts = {name: _rounded_count(float((imp <= threshold).float().mean()), len(imp), round_to)
                  for _, _, imp, name in plans}
    for root, handler, imp, name in plans:
        n_prune = counts[name]
        if n_prune <= 0:
            continue
        idxs = torch.argsort(imp)[:n_prune].tolist()
        group = graph.get_pruning_group(root, handler, idxs=idxs)
        if graph.check_pruning_group(group):
            _mark_deleted(group, names, kept)
            group.prune()
    return pruned, kept


def _mark_deleted(group, names: dict, kept: dict) -> None:
    """Set False, in `kept` (unit name -> mask of its dense weight), the rows of the output channels and the
    columns of the input channels that pruning `group` deletes. Indices are the dense weight's: a group prunes
    one dimension of each layer, which earlier groups' pruning of the other dimension leaves in place."""
    for dep, idxs in group:
        layer, fn = dep.layer, dep.pruning_fn
        mask = kept.get(names.get(layer))
        if mask is None or fn not in (tp.prune_conv_out_channels, tp.prune_conv_in_channels):
            continue
        transposed = getattr(layer, "transposed", False)
        dim = (1 if transposed else 0) if fn == tp.prune_conv_out_channels else (0 if transposed else 1)
        mask.index_fill_(dim, torch.as_tensor(idxs, dtype=torch.long), False)


def _min_width(n: int, round_to: int | None) -> int:
    """The fewest channels a group of `n` keeps: MIN_KEEP of them (at least one), rounded up to `round_to`."""
    least = max(1, math.ceil(MIN_KEEP * n))
    return max(round_to, math.ceil(least / round_to) * round_to) if round_to else least


def _rounded_count(ratio: float, n: int, round_to: int | None) -> int:
    """Channels to remove from a group of `n` at `ratio`, the width rounded up to a multiple of `round_to`."""
    n_prune = min(int(round(ratio * n)), n - max(1, math.ceil(MIN_KEEP * n)))
    if round_to:
        n_prune = max(0, n - max(round_to, int(math.ceil((n - n_prune) / round_to)) * round_to))
    return n_prune


def dithered_counts(ratios: dict, sizes: dict, round_to: int | None) -> dict:
    """group -> channels to remove at its `ratios` entry, the kept width a multiple of `round_to` (or 1), each group
    rounding at its own offset (i + 0.5) / groups instead of at one half. With one shared rounding point, groups
    of equal ratio and width would change width together as the bisection's factor grows, and the realised
    sparsity would jump past the target; staggered offsets move one group by one step at a time, and the count
    still grows with the ratio, so the bisection stays monotone."""
    step = round_to or 1
    counts = {}
    for i, (name, ratio) in enumerate(ratios.items()):
        n = sizes[name]
        kept = step * math.floor(n * (1 - ratio) / step + (i + 0.5) / len(ratios))
        kept = n if ratio <= 0 or kept >= n else max(kept, _min_width(n, round_to))
        counts[name] = max(0, n - kept)
    return counts
