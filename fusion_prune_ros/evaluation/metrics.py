"""Predictions -> nuScenes results JSON -> the official `DetectionEval` (detection_cvpr_2019).

Scoring goes through the devkit itself, never a re-implementation, so numbers on the generated set mean what
they mean on nuScenes. Ground truth in the LiDAR frame (for training targets and sanity checks) is read here too.
"""
from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
from nuscenes.eval.common.config import config_factory
from nuscenes.eval.detection.evaluate import DetectionEval

from ..data.classes import CATEGORY_TO_CLASS, DETECTION_CLASSES
from ..data.nusc import check_split, split_sample_tokens
from ..detections import Detections, from_global, lidar_to_global, to_nuscenes_boxes
from ..documents import read_document
from ..errors import UserError

EVAL_CONFIG = "detection_cvpr_2019"
TP_METRICS = ("trans_err", "scale_err", "orient_err", "vel_err", "attr_err")


def ground_truth(nusc, sample_token: str, min_points: int = 0) -> Detections:
    """The sample's annotations of the ten detection classes as LiDAR-frame Detections (score 1).

    min_points = 1 keeps only the boxes the official evaluation keeps (it drops boxes without LiDAR or radar
    points). Velocities come from the devkit's finite differences over neighbouring annotations; they are NaN for
    an instance seen once, which callers must treat as 'unknown'.
    """
    sample = nusc.get("sample", sample_token)
    anns = [nusc.get("sample_annotation", t) for t in sample["anns"]]
    anns = [a for a in anns if a["category_name"] in CATEGORY_TO_CLASS
            and a["num_lidar_pts"] + a["num_radar_pts"] >= min_points]
    labels = np.array([DETECTION_CLASSES.index(CATEGORY_TO_CLASS[a["category_name"]]) for a in anns], np.int64)
    velocities = [nusc.box_velocity(a["token"])[:2] for a in anns]
    boxes = from_global([a["translation"] for a in anns], [a["size"] for a in anns], [a["rotation"] for a in anns],
                        velocities, lidar_to_global(nusc, sample_token))
    attrs = [nusc.get("attribute", a["attribute_tokens"][0])["name"] if a["attribute_tokens"] else "" for a in anns]
    return Detections(boxes, np.ones(len(anns), np.float32), labels, attrs)


def results_document(nusc, predictions: dict, use_camera: bool = True, use_lidar: bool = True) -> dict:
    """{sample_token: Detections (LiDAR frame)} -> the nuScenes detection results document."""
    results = {}
    for token, det in predictions.items():
        boxes = to_nuscenes_boxes(det, lidar_to_global(nusc, token), token)
        for b in boxes:  # unknown velocities (NaN) are written as zero: JSON has no NaN
            b["velocity"] = [0.0 if not np.isfinite(v) else v for v in b["velocity"]]
        results[token] = boxes
    return {"meta": {"use_camera": use_camera, "use_lidar": use_lidar, "use_radar": False, "use_map": False,
                     "use_external": False}, "results": results}


def ground_truth_predictions(nusc, split: str) -> dict:
    """Every sample of the split with its evaluable ground truth as predictions (the sanity check: mAP = NDS = 1)."""
    return {t: ground_truth(nusc, t, min_points=1) for t in split_sample_tokens(nusc, split)}


def evaluate_results(nusc, results_path: str | Path, split: str, out_dir: str | Path, verbose: bool = False,
                     sample_tokens: list | None = None) -> dict:
    """Run the official DetectionEval on a results file; returns its metrics summary (also written to out_dir).

    sample_tokens restricts scoring to some samples of the split (one scene of a replay, a segment with a sensor
    blacked out): the devkit loads and filters ground truth and predictions for the whole split as usual, then
    its own `evaluate()` runs on the chosen samples only. The results file may then leave the other samples out.
    """
    check_split(nusc.version, split)
    results_path, out_dir = Path(results_path), Path(out_dir)
    doc = read_document(results_path, json.loads, json.JSONDecodeError, f"results file not found: {results_path}",
                        f"malformed results file {results_path}")
    wanted = split_sample_tokens(nusc, split) if sample_tokens is None else list(sample_tokens)
    missing = set(wanted) - set(doc.get("results", {}))
    if missing:
        raise UserError(f"results file {results_path.name} lacks {len(missing)} sample(s) of split {split}")
    out_dir.mkdir(parents=True, exist_ok=True)
    if not any(doc["results"].get(t) for t in wanted):
        return _no_predictions(len(wanted))
    with contextlib.ExitStack() as sink:
        if not verbose:
            # The devkit prints its progress to stdout and draws tqdm bars on stderr whatever `verbose` says (its
            # loaders call tqdm unconditionally): quiet means neither. Exceptions still propagate.
            sink.enter_context(contextlib.redirect_stdout(io.StringIO()))
            sink.enter_context(contextlib.redirect_stderr(io.StringIO()))
        if sample_tokens is None:
            evaluator = DetectionEval(nusc, config_factory(EVAL_CONFIG), str(results_path), split, str(out_dir),
                                      verbose=verbose)
            return evaluator.main(plot_examples=0, render_curves=False)
        # The devkit insists that predictions cover the whole split: pad with empty lists, then score the subset.
        full = {t: doc["results"].get(t, []) for t in split_sample_tokens(nusc, split)}
        padded = out_dir / "results_padded.json"
        padded.write_text(json.dumps({**doc, "results": full}))
        evaluator = DetectionEval(nusc, config_factory(EVAL_CONFIG), str(padded), split, str(out_dir),
                                  verbose=verbose)
        keep = set(sample_tokens)
        for boxes in (evaluator.gt_boxes, evaluator.pred_boxes):
            boxes.boxes = {t: b for t, b in boxes.boxes.items() if t in keep}
        evaluator.sample_tokens = [t for t in evaluator.sample_tokens if t in keep]
        metrics, _ = evaluator.evaluate()
        summary = metrics.serialize()
        summary["meta"] = {**evaluator.meta, "sample_tokens": len(keep)}
        (out_dir / "metrics_summary.json").write_text(json.dumps(summary, indent=1))
        return summary


def _no_predictions(samples: int) -> dict:
    """The score of an empty results file, which the devkit refuses to load: no true positives, so AP 0 and every
    TP error at its cap of 1, hence NDS 0."""
    return {"mean_ap": 0.0, "nd_score": 0.0, "tp_errors": {k: 1.0 for k in TP_METRICS},
            "mean_dist_aps": {c: 0.0 for c in DETECTION_CLASSES},
            "label_tp_errors": {c: {k: 1.0 for k in TP_METRICS} for c in DETECTION_CLASSES},
            "meta": {"note": "no predictions", "sample_tokens": samples}}


def evaluate_predictions(nusc, predictions: dict, split: str, out_dir: str | Path, use_camera: bool = True,
                         use_lidar: bool = True, sample_tokens: list | None = None) -> dict:
    """Write predictions as a results file under out_dir and score them (optionally on some samples only)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "results_nusc.json"
    path.write_text(json.dumps(results_document(nusc, predictions, use_camera, use_lidar)))
    return evaluate_results(nusc, path, split, out_dir, sample_tokens=sample_tokens)


def format_metrics(summary: dict) -> str:
    """mAP, NDS, the mean TP errors and a per-class table, as printed by `fusion-prune eval`."""
    lines = [f"mAP {summary['mean_ap']:.4f}   NDS {summary['nd_score']:.4f}",
             "   ".join(f"m{k.split('_')[0].upper()[:3]}E {summary['tp_errors'][k]:.4f}" for k in TP_METRICS),
             f"{'class':<22}{'AP':>8}" + "".join(f"{k:>12}" for k in TP_METRICS)]
    for cls in DETECTION_CLASSES:
        row = f"{cls:<22}{summary['mean_dist_aps'][cls]:>8.4f}"
        row += "".join(f"{summary['label_tp_errors'][cls][k]:>12.4f}" for k in TP_METRICS)
        lines.append(row)
    return "\n".join(lines)


def brief_metrics(summary: dict) -> dict:
    """The numbers a variant is compared by: mAP, NDS, TP errors, per-class AP."""
    return {"mAP": round(summary["mean_ap"], 4), "NDS": round(summary["nd_score"], 4),
            "tp_errors": {k: round(v, 4) for k, v in summary["tp_errors"].items()},
            "class_ap": {k: round(v, 4) for k, v in summary["mean_dist_aps"].items()}}
