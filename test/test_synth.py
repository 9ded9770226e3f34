"""The generated set is real nuScenes format, deterministic, and its annotations agree with its sensor data."""
import hashlib
import json

import numpy as np
import pytest

from conftest import TINY
from fusion_prune_ros.data.classes import CAMERAS, CLASS_ATTRIBUTES, DETECTION_CLASSES, LIDAR
from fusion_prune_ros.data.frame import load_frame
from fusion_prune_ros.data.nusc import open_nuscenes, split_sample_tokens
from fusion_prune_ros.data.schema import TABLE_NAMES
from fusion_prune_ros.data.synth.generate import SynthConfig, generate
from fusion_prune_ros.data.synth.sensors import CameraModel, LidarModel, camera_calibs, lidar_calib
from fusion_prune_ros.data.synth.layout import sample_world
from fusion_prune_ros.errors import UserError
from fusion_prune_ros.evaluation.metrics import ground_truth
from fusion_prune_ros.geometry import points_in_boxes


def test_devkit_loads_all_tables_and_channels(tiny_nusc):
    for name in TABLE_NAMES:
        assert len(getattr(tiny_nusc, name)) > 0, name
    assert {s["name"] for s in tiny_nusc.scene} == {"scene-0103", "scene-0061"}
    assert len(tiny_nusc.sample) == 2 * 4  # 2 s at 2 Hz per scene
    for sample in tiny_nusc.sample:
        assert set(sample["data"]) == {LIDAR, *CAMERAS}
    assert len(split_sample_tokens(tiny_nusc, "mini_val")) == 4


def test_sweeps_rates_and_files(tiny_nusc, tiny_root):
    scene = tiny_nusc.scene[0]
    sample = tiny_nusc.get("sample", scene["first_sample_token"])
    for channel, hz in [(LIDAR, 20), ("CAM_FRONT", 12)]:
        sd = tiny_nusc.get("sample_data", sample["data"][channel])
        while sd["prev"]:
            sd = tiny_nusc.get("sample_data", sd["prev"])
        stamps, keys = [], 0
        while True:
            assert (tiny_root / sd["filename"]).is_file()
            stamps.append(sd["timestamp"])
            keys += sd["is_key_frame"]
            if not sd["next"]:
                break
            sd = tiny_nusc.get("sample_data", sd["next"])
        assert keys == 4
        np.testing.assert_allclose(np.diff(stamps), 1e6 / hz, atol=1)
    points = np.fromfile(tiny_root / tiny_nusc.get("sample_data", sample["data"][LIDAR])["filename"], np.float32)
    points = points.reshape(-1, 5)
    assert len(points) > 1000 and set(np.unique(points[:, 4])) <= set(range(32))


def test_annotations_cover_classes_and_match_lidar(tiny_nusc, tiny_root):
    names = set()
    for token in split_sample_tokens(tiny_nusc, "mini_val"):
        gt = ground_truth(tiny_nusc, token, min_points=1)
        names |= {DETECTION_CLASSES[i] for i in gt.labels}
        for label, attr in zip(gt.labels, gt.attributes):
            options = CLASS_ATTRIBUTES[DETECTION_CLASSES[label]]
            assert attr in options if options else attr == ""
    assert names == set(DETECTION_CLASSES)
    # num_lidar_pts is the number of key-frame returns inside the box, as nuScenes defines it.
    sample = tiny_nusc.sample[0]
    sd = tiny_nusc.get("sample_data", sample["data"][LIDAR])
    points = np.fromfile(tiny_root / sd["filename"], np.float32).reshape(-1, 5)
    gt = ground_truth(tiny_nusc, sample["token"])
    counts = points_in_boxes(points[:, :3].astype(np.float64), gt.boxes[:, :3], gt.boxes[:, 3:6], gt.boxes[:, 6])
    anns = [tiny_nusc.get("sample_annotation", t) for t in sample["anns"]]
    expected = [a["num_lidar_pts"] for a in anns]
    assert abs(counts.sum(1) - np.array(expected)).max() <= 1  # float32 file vs float64 rounding at box faces


def test_moving_objects_have_velocity_and_visibility_levels(tiny_nusc):
    speeds = []
    for ann in tiny_nusc.sample_annotation:
        assert ann["visibility_token"] in {"1", "2", "3", "4"}
        attrs = [tiny_nusc.get("attribute", t)["name"] for t in ann["attribute_tokens"]]
        if attrs == ["vehicle.moving"] and ann["prev"]:
            speeds.append(np.linalg.norm(tiny_nusc.box_velocity(ann["token"])[:2]))
    assert speeds and min(speeds) > 0.3
    assert {a["visibility_token"] for a in tiny_nusc.sample_annotation} >= {"1", "4"}


def test_ego_drives_on_the_map_mask(tiny_nusc):
    for scene in tiny_nusc.scene:
        log = tiny_nusc.get("log", scene["log_token"])
        mask = next(m for m in tiny_nusc.map if log["token"] in m["log_tokens"])["mask"]
        sample = tiny_nusc.get("sample", scene["first_sample_token"])
        pose = tiny_nusc.get("ego_pose", tiny_nusc.get("sample_data", sample["data"][LIDAR])["ego_pose_token"])
        assert mask.is_on_mask(pose["translation"][0], pose["translation"][1])


def test_frame_inputs_project_lidar_into_images(tiny_nusc):
    frame = load_frame(tiny_nusc, tiny_nusc.sample[0]["token"], n_sweeps=3)
    assert frame.points.shape[1] == 5 and frame.images.shape[0] == 6 and frame.camera_present.all()
    np.testing.assert_allclose(np.unique(np.round(frame.points[:, 4], 3)), [0.0, 0.05, 0.1], atol=1e-6)
    # The camera <- LiDAR transforms (ego motion between the stamps included) agree with the devkit's own
    # projection of the key sweep into each camera.
    sample = tiny_nusc.sample[0]
    key = frame.points[frame.points[:, 4] == 0]
    for c, cam in enumerate(frame.camera_names):
        expected, _, _ = tiny_nusc.explorer.map_pointcloud_to_image(sample["data"]["LIDAR_TOP"], sample["data"][cam])
        p = np.c_[key[:, :3], np.ones(len(key))] @ frame.cam_from_lidar[c].T.astype(np.float64)
        depth = p[:, 2]
        uv = p[:, :2] / np.maximum(depth[:, None], 1e-6) @ frame.intrinsics[c][:2, :2].T + frame.intrinsics[c][:2, 2]
        h, w = frame.images.shape[1:3]
        inside = (depth > 1.0) & (uv[:, 0] > 1) & (uv[:, 0] < w - 1) & (uv[:, 1] > 1) & (uv[:, 1] < h - 1)
        assert abs(int(inside.sum()) - expected.shape[1]) <= 0.01 * expected.shape[1] + 2, cam
        np.testing.assert_allclose(np.sort(uv[inside, 0])[:50], np.sort(expected[0])[:50], atol=0.05)


def _digest(root):
    h = hashlib.sha256()
    for name in TABLE_NAMES:
        h.update((root / "v1.0-mini" / f"{name}.json").read_bytes())
    for path in sorted((root / "samples").rglob("*"))[:20]:
        if path.is_file():
            h.update(path.read_bytes())
    return h.hexdigest()


def test_deterministic_for_a_seed_whatever_the_workers(tmp_path):
    cfg = dict(TINY, scene_seconds=0.5, val_scenes=1, train_scenes=1)
    generate(SynthConfig(**cfg, workers=1), tmp_path / "a", quiet=True)
    generate(SynthConfig(**cfg, workers=2), tmp_path / "b", quiet=True)
    generate(SynthConfig(**cfg, seed=1, workers=2), tmp_path / "c", quiet=True)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b") != _digest(tmp_path / "c")


def test_conditions_hurt_the_modalities_differently():
    lidar = LidarModel(lidar_calib(720))
    cam = CameraModel(camera_calibs(160, 90)[0])
    stats = {}
    for cond in ("day", "night", "rain"):
        world = sample_world(np.random.default_rng(3), cond, 2.0, 0.45)
        points = lidar.scan(world, 1.0, np.random.default_rng(0))
        real = points[points[:, 3] > 4]  # rain clutter has near-zero intensity
        image = cam.shoot(world, 1.0, np.random.default_rng(0))[0]
        stats[cond] = (len(real), image.mean())
    assert stats["rain"][0] < 0.8 * stats["day"][0]  # rain: fewer LiDAR returns
    assert stats["night"][0] > 0.9 * stats["day"][0]  # night: LiDAR unaffected
    assert stats["night"][1] < 0.5 * stats["day"][1]  # night: dark images


@pytest.mark.parametrize("change, message", [
    (dict(version="v2.0"), "unknown version"),
    (dict(train_scenes=99), "train and"),
    (dict(train_scenes=0, val_scenes=0), "no scenes"),
])
def test_bad_configs_are_one_line_errors(tmp_path, change, message):
    with pytest.raises(UserError, match=message):
        generate(SynthConfig(**dict(TINY, **change)), tmp_path / "x", quiet=True)
    assert not (tmp_path / "x").exists() and not (tmp_path / "x.partial").exists()


def test_existing_output_is_refused(tmp_path):
    (tmp_path / "x").mkdir()
    with pytest.raises(UserError, match="already exists"):
        generate(SynthConfig(**TINY), tmp_path / "x", quiet=True)


def test_missing_or_malformed_tables_are_one_line_errors(tiny_root, tmp_path):
    import shutil
    copy = tmp_path / "copy"
    shutil.copytree(tiny_root / "v1.0-mini", copy / "v1.0-mini")
    with pytest.raises(UserError, match="unknown nuScenes version"):
        open_nuscenes(copy, "v9")
    # no such version here: one line naming the command that generates it
    with pytest.raises(UserError, match="no v1.0-trainval data set at .*: generate it first with `fusion-prune synth "
                                        "--out .* --version v1.0-trainval"):
        open_nuscenes(copy, "v1.0-trainval")
    (copy / "v1.0-mini" / "sample.json").write_text("[{")
    with pytest.raises(UserError, match="malformed table v1.0-mini/sample.json"):
        open_nuscenes(copy, "v1.0-mini")
    (copy / "v1.0-mini" / "sample.json").unlink()
    with pytest.raises(UserError, match="missing table v1.0-mini/sample.json"):
        open_nuscenes(copy, "v1.0-mini")


def test_missing_sensor_file_is_named(tiny_root, tmp_path):
    import shutil
    copy = tmp_path / "copy"
    shutil.copytree(tiny_root / "v1.0-mini", copy / "v1.0-mini")
    shutil.copytree(tiny_root / "maps", copy / "maps")
    nusc = open_nuscenes(copy, "v1.0-mini")
    with pytest.raises(UserError, match="missing sensor file samples/LIDAR_TOP/"):
        load_frame(nusc, nusc.sample[0]["token"], 1)


def test_summary_records_config(tiny_root):
    summary = json.loads((tiny_root / "synth.json").read_text())
    assert summary["config"]["seed"] == 0 and summary["samples"] == 8 and summary["bytes"] > 0


def test_terminated_run_leaves_nothing_behind(tmp_path):
    """SIGTERM during generation: no output folder, no .partial, no orphaned worker processes."""
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "fusion_prune_ros.cli", "synth", "--out", str(out), "--quiet",
                             "--train-scenes", "2", "--val-scenes", "1", "--image-size", "160x90"],
                            start_new_session=True)
    deadline = time.time() + 60
    while not (tmp_path / "killed.partial" / "samples" / "LIDAR_TOP").is_dir() or \
            not any((tmp_path / "killed.partial" / "sweeps" / "LIDAR_TOP").iterdir()):
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) != 0
    assert not out.exists() and not (tmp_path / "killed.partial").exists()
    deadline = time.time() + 10  # the workers and multiprocessing's helpers exit within moments
    with pytest.raises(ProcessLookupError):
        while time.time() < deadline:
            os.killpg(proc.pid, 0)  # raises once every process of the run's session is gone
            time.sleep(0.2)
