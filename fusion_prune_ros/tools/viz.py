"""Pictures people would rather see than read: a bird's-eye view of LiDAR + boxes, and the six camera images.

Used by `fusion-prune show` to look at data, and by the demo / replay for detections.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..data.classes import DETECTION_CLASSES  # noqa: E402
from ..detections import Detections  # noqa: E402
from ..geometry import box_corners  # noqa: E402

CLASS_COLOURS = plt.get_cmap("tab10")


def bev_plot(points: np.ndarray, path: str | Path, truth: Detections | None = None,
             predicted: Detections | None = None, extent: float = 55.0, title: str = "") -> None:
    """LiDAR points (LiDAR frame, coloured by height) with ground-truth boxes (solid) and predictions (dashed)."""
    fig, ax = plt.subplots(figsize=(8, 8), dpi=110)
    near = (np.abs(points[:, 0]) < extent) & (np.abs(points[:, 1]) < extent)
    ax.scatter(points[near, 0], points[near, 1], s=0.15, c=np.clip(points[near, 2], -2.5, 2.0), cmap="viridis")
    for det, style in ((truth, "-"), (predicted, "--")):
        if det is None:
            continue
        for box, label in zip(det.boxes, det.labels):
            corners = box_corners(box[:3], box[3:6], float(box[6]))[[0, 1, 5, 4, 0], :2]
            ax.plot(corners[:, 0], corners[:, 1], style, color=CLASS_COLOURS(int(label)), lw=1.0)
            front = corners[:2].mean(0)
            ax.plot([box[0], front[0]], [box[1], front[1]], style, color=CLASS_COLOURS(int(label)), lw=0.8)
    handles = [plt.Line2D([], [], color=CLASS_COLOURS(i), label=c) for i, c in enumerate(DETECTION_CLASSES)]
    ax.legend(handles=handles, loc="upper right", fontsize=7)
    ax.plot(0, 0, "k^", ms=8)
    ax.set_xlim(-extent, extent)
    ax.set_ylim(-extent, extent)
    ax.set_aspect("equal")
    ax.set_xlabel("x [m] (LIDAR_TOP frame)")
    ax.set_ylabel("y [m]")
    ax.set_title(title or "LiDAR BEV: ground truth solid, predictions dashed")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def camera_mosaic(images: np.ndarray, names, path: str | Path, title: str = "") -> None:
    """The six cameras in the nuScenes layout: front-left, front, front-right over back-left, back, back-right."""
    order = ["CAM_FRONT_LEFT", "CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_BACK_LEFT", "CAM_BACK", "CAM_BACK_RIGHT"]
    index = {n: i for i, n in enumerate(names)}
    h, w = images.shape[1:3]
    fig, axes = plt.subplots(2, 3, figsize=(3 * w / 80, 2 * h / 80 + 0.4), dpi=80)
    for ax, name in zip(axes.ravel(), order):
        ax.imshow(images[index[name]])
        ax.set_title(name, fontsize=8)
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
