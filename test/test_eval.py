"""The official metric on generated data: ground truth scores 1.0, each perturbation hurts its own metric."""
import copy
import subprocess
import sys

import numpy as np
import pytest

from fusion_prune_ros.data.classes import CLASS_ATTRIBUTES, DETECTION_CLASSES
from fusion_prune_ros.errors import UserError
from fusion_prune_ros.evaluation.metrics import evaluate_predictions, evaluate_results, ground_truth_predictions

SPLIT = "mini_val"


@pytest.fixture(scope="module")
def gt(tiny_nusc):
    return ground_truth_predictions(tiny_nusc, SPLIT)


def _perturbed(gt, fn):
    rng = np.random.default_rng(0)
    out = {}
    for token, det in gt.items():
        d = copy.deepcopy(det)
        fn(d, rng)
        out[token] = d
    return out


def _score(nusc, preds, tmp_path):
    s = evaluate_predictions(nusc, preds, SPLIT, tmp_path)
    return s["mean_ap"], s["nd_score"], s["tp_errors"]


def test_ground_truth_scores_one(tiny_nusc, gt, tmp_path):
    mean_ap, nds, errors = _score(tiny_nusc, gt, tmp_path)
    assert mean_ap == pytest.approx(1.0) and nds == pytest.approx(1.0)
    assert all(v == pytest.approx(0.0, abs=1e-5) for v in errors.values()), errors


def _shift(d, rng):
    d.boxes[:, :2] += rng.normal(0, 0.4, (len(d), 2))


def _turn(d, rng):
    d.boxes[:, 6] += rng.choice([-1, 1], len(d)) * 0.8


def _grow(d, rng):
    d.boxes[:, 3:6] *= 1.4


def _speed(d, rng):
    d.boxes[:, 7:9] = np.nan_to_num(d.boxes[:, 7:9]) + rng.normal(0, 2.0, (len(d), 2))


def _swap_attributes(d, rng):
    d.attributes = [next((o for o in CLASS_ATTRIBUTES[DETECTION_CLASSES[l]] if o != a), a)
                    for l, a in zip(d.labels, d.attributes)]


@pytest.mark.parametrize("fn, metric", [(_shift, "trans_err"), (_turn, "orient_err"), (_grow, "scale_err"),
                                        (_speed, "vel_err"), (_swap_attributes, "attr_err")])
def test_perturbation_raises_its_error(tiny_nusc, gt, tmp_path, fn, metric):
    mean_ap, nds, errors = _score(tiny_nusc, _perturbed(gt, fn), tmp_path)
    assert errors[metric] > 0.15
    assert nds < 0.99
    for other, value in errors.items():
        if other != metric and not (metric == "trans_err"):  # a shift also costs some matches
            assert value == pytest.approx(0.0, abs=1e-6), other


def test_dropping_boxes_lowers_map(tiny_nusc, gt, tmp_path):
    mean_ap, _, _ = _score(tiny_nusc, _perturbed(gt, lambda d, rng: d.__setattr__(
        "scores", rng.random(len(d)).astype(np.float32))) | {t: d.select(np.arange(len(d)) % 2 == 0)
                                                              for t, d in gt.items()}, tmp_path)
    assert mean_ap < 0.8


def test_results_must_cover_the_split(tiny_nusc, gt, tmp_path):
    token = next(iter(gt))
    partial = {t: d for t, d in gt.items() if t != token}
    with pytest.raises(UserError, match="lacks 1 sample"):
        evaluate_predictions(tiny_nusc, partial, SPLIT, tmp_path)
    with pytest.raises(UserError, match="does not belong"):
        evaluate_results(tiny_nusc, tmp_path / "results_nusc.json", "val", tmp_path)


def test_cli_eval_and_errors(tiny_root, tmp_path):
    run = [sys.executable, "-m", "fusion_prune_ros.cli"]
    ok = subprocess.run(run + ["eval", "--dataroot", str(tiny_root), "--ground-truth", "--out", str(tmp_path)],
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "mAP 1.0000   NDS 1.0000" in ok.stdout
    bad = subprocess.run(run + ["synth", "--out", str(tiny_root)], capture_output=True, text=True)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [f"fusion-prune synth: error: output directory already exists: "
                                               f"{tiny_root} (choose another --out or remove it)"]
    for command in ("synth", "to-bag", "eval"):
        assert subprocess.run(run + [command, "--help"], capture_output=True).returncode == 0


def test_scoring_a_subset_of_samples(tiny_nusc, gt, tmp_path):
    """A scene or segment is scored by the official code on its samples only; others may be absent."""
    tokens = list(gt)[:2]
    subset = {t: gt[t] for t in tokens}
    s = evaluate_predictions(tiny_nusc, subset, SPLIT, tmp_path, sample_tokens=tokens)
    # Perfect on the samples scored; a class without evaluable ground truth there has AP 0, as on any split.
    assert s["meta"]["sample_tokens"] == 2 and s["mean_ap"] >= 0.7
    scored = [c for c, ap in s["mean_dist_aps"].items() if ap > 0]
    assert all(s["mean_dist_aps"][c] == pytest.approx(1.0) for c in scored)
    assert all(s["label_tp_errors"][c]["trans_err"] == pytest.approx(0.0, abs=1e-5) for c in scored)
    # Dropping the detections of one of the two samples costs recall.
    half = {tokens[0]: gt[tokens[0]], tokens[1]: gt[tokens[1]].select(np.zeros(len(gt[tokens[1]]), bool))}
    assert evaluate_predictions(tiny_nusc, half, SPLIT, tmp_path, sample_tokens=tokens)["mean_ap"] < s["mean_ap"]


def test_empty_predictions_score_zero(tiny_nusc, gt, tmp_path):
    from fusion_prune_ros.detections import Detections
    s = evaluate_predictions(tiny_nusc, {t: Detections() for t in gt}, SPLIT, tmp_path)
    assert s["mean_ap"] == 0.0 and s["nd_score"] == 0.0
