"""A replay's detections are those of the straightforward per-frame path: the same bag through a core whose frame
preparation is swapped for the numpy references (the multi-sweep cloud moved by a matrix product, each frame's
images resized and normalised in float, the grid, pillars and peak map in numpy) gives the same detections, for
every graph of the profile (fused, LiDAR-only, camera-only)."""
import numpy as np
import pytest

from fusion_prune_ros.bag.replay import replay
from fusion_prune_ros.model.preprocess import normalise_images
from fusion_prune_ros.runtime import assembled, assembler, pipeline
from fusion_prune_ros.runtime.core import CoreConfig
from fusion_prune_ros.runtime.policy import PolicyConfig
from fusion_prune_ros.runtime.profile import load_profile
from test_assembler import reference_cloud
from test_kernels import (assert_same_boxes, reference_camera_grid, reference_camera_images, reference_lidar_bev,
                          reference_numpy_decode)


class _ReferenceSweeps:
    """The sweeps of a LiDAR frame, merged the reference way (by a matrix product)."""

    def __init__(self, key, earlier):
        self.points = reference_cloud(key, list(earlier))

    def cloud(self):
        return self.points


def _use_references(monkeypatch):
    monkeypatch.setattr(assembler, "remove_close", lambda points: points)  # reference_cloud removes them
    monkeypatch.setattr(assembler, "MultiSweep", _ReferenceSweeps)
    monkeypatch.setattr(assembled, "network_image", lambda image, cfg: reference_camera_images(image[None], cfg)[0])
    monkeypatch.setattr(assembled, "normalised_planes", lambda image: np.ascontiguousarray(normalise_images(image)))
    monkeypatch.setattr(pipeline, "lidar_bev", reference_lidar_bev)
    monkeypatch.setattr(pipeline, "camera_grid", reference_camera_grid)
    monkeypatch.setattr(pipeline, "decode", lambda heat, reg, grid, cfg: [reference_numpy_decode(heat, reg, grid, cfg)])


def _detections(profile, variant, out):
    cfg = CoreConfig(profile=profile, backend="onnxruntime", device="cpu", score_threshold=0.05,
                     policy=PolicyConfig(latency_budget_ms=1e4, override=variant))
    _, record = replay(out.parent.parent / "val_bag", cfg, out, no_drop=True, quiet=True)
    assert {f["variant"] for f in record.frames} == {variant}
    return record.detections


@pytest.mark.parametrize("modality", ["fused", "lidar", "camera"])
def test_replay_detections_equal_the_reference_path(shipped, modality, monkeypatch):
    """Labels, scores and boxes bit for bit, but for the yaw (`test_kernels.assert_same_boxes`)."""
    profile = str(shipped / "profiles" / "dense.yaml")
    variant = next(v.name for v in load_profile(profile).variants if v.modality == modality)
    got = _detections(profile, variant, shipped / "frame_path" / f"{modality}_node")
    with monkeypatch.context() as patched:
        _use_references(patched)
        ref = _detections(profile, variant, shipped / "frame_path" / f"{modality}_reference")
    assert got.keys() == ref.keys() and sum(len(d) for d in got.values()) > 0
    for stamp, det in got.items():
        np.testing.assert_array_equal(det.labels, ref[stamp].labels)
        np.testing.assert_array_equal(det.scores, ref[stamp].scores)
        assert_same_boxes(det.boxes, ref[stamp].boxes)
