"""Frame assembly from a message stream reproduces the devkit's frame exactly, and bad timing is dropped."""
import numpy as np
import pytest

from fusion_prune_ros.config import CameraInputConfig
from fusion_prune_ros.data.classes import CAMERAS, LIDAR
from fusion_prune_ros.data.frame import load_frame
from fusion_prune_ros.geometry import invert_rigid, make_transform, rot_z
from fusion_prune_ros.model.preprocess import camera_images, normalise_images
from fusion_prune_ros.runtime.assembler import AssemblerConfig, Calibration, Dropped, FrameAssembler
from fusion_prune_ros.runtime.multisweep import multisweep_cloud, remove_close


def _stream(nusc, scene):
    """(stamp_ns, channel, sample_data) of every sensor message of a scene, in time order, like a bag."""
    first = nusc.get("sample", scene["first_sample_token"])
    out = []
    for channel in (LIDAR, *CAMERAS):
        sd = nusc.get("sample_data", first["data"][channel])
        while sd["prev"]:
            sd = nusc.get("sample_data", sd["prev"])
        while True:
            out.append((sd["timestamp"] * 1000, channel, sd))
            if not sd["next"]:
                break
            sd = nusc.get("sample_data", sd["next"])
    return sorted(out, key=lambda r: r[0])


def _calibration(nusc, sample):
    def base_from(channel):
        cs = nusc.get("calibrated_sensor", nusc.get("sample_data", sample["data"][channel])["calibrated_sensor_token"])
        return make_transform(cs["rotation"], cs["translation"]), np.array(cs["camera_intrinsic"] or np.eye(3))

    return Calibration(base_from(LIDAR)[0], {c: base_from(c)[0] for c in CAMERAS},
                       {c: base_from(c)[1] for c in CAMERAS})


def test_stream_assembly_equals_the_devkit_frame(tiny_nusc, tiny_root):
    """Also when some sweeps only join the history (the node was busy when they arrived)."""
    import cv2

    scene = tiny_nusc.scene[0]
    sample = tiny_nusc.get("sample", scene["first_sample_token"])
    asm = FrameAssembler(CAMERAS, _calibration(tiny_nusc, sample), AssemblerConfig(n_sweeps=6))
    frames = {}
    for stamp, channel, sd in _stream(tiny_nusc, scene):
        pose = tiny_nusc.get("ego_pose", sd["ego_pose_token"])
        asm.add_pose(stamp, make_transform(pose["rotation"], pose["translation"]))
        if channel == LIDAR:
            pts = np.fromfile(tiny_root / sd["filename"], np.float32).reshape(-1, 5)[:, :4]
            if sd["is_key_frame"]:
                frames[sd["sample_token"]] = asm.add_cloud(stamp, pts)[0]
            elif (stamp // 50_000_000) % 2:  # a sweep the node was too busy to run still joins the history
                asm.add_sweep(stamp, pts)
            else:
                asm.add_cloud(stamp, pts)
        else:
            rgb = cv2.cvtColor(cv2.imread(str(tiny_root / sd["filename"])), cv2.COLOR_BGR2RGB)
            asm.add_image(channel, stamp, rgb)
    assert len(frames) == scene["nbr_samples"]
    for token, frame in frames.items():
        ref = load_frame(tiny_nusc, token, 6)
        assert frame.camera_present.all()
        np.testing.assert_allclose(frame.cam_from_lidar, ref.cam_from_lidar, atol=1e-5)
        cloud = frame.cloud()
        a = cloud[np.lexsort(cloud.T[::-1])]
        b = ref.points[np.lexsort(ref.points.T[::-1])]
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, atol=1e-4)
        network = camera_images(ref.images, CameraInputConfig())  # the images are kept at the network's size
        np.testing.assert_array_equal(frame.pixels(), network)
        np.testing.assert_array_equal(frame.image_planes(), normalise_images(network))
        assert frame.source_size == (ref.images.shape[2], ref.images.shape[1])


def _assembler():
    eye = {c: np.eye(4) for c in CAMERAS}
    return FrameAssembler(CAMERAS, Calibration(np.eye(4), eye, {c: np.eye(3) for c in CAMERAS}),
                          AssemblerConfig(n_sweeps=3, camera_max_age_s=0.1))


def test_lidar_drives_frames_and_missing_cameras_are_masked():
    asm = _assembler()
    pts = np.ones((10, 4), np.float32) * 5
    frame, notes = asm.add_cloud(1_000_000_000, pts)  # no camera ever seen: a frame anyway
    assert not frame.camera_present.any() and notes == []
    asm.add_image("CAM_FRONT", 1_040_000_000, np.zeros((9, 16, 3), np.uint8))
    frame, notes = asm.add_cloud(1_050_000_000, pts)
    assert frame.camera_present.tolist() == [True] + [False] * 5
    assert notes == ["no_odometry"]  # earlier sweeps need poses
    frame, _ = asm.add_cloud(1_200_000_000, pts)  # the image is now 160 ms old: stale
    assert not frame.camera_present.any()


def test_a_frame_takes_the_newest_image_stamped_before_the_sweep():
    """Whether the camera's next image arrived before the sweep ran must not change the frame."""
    asm = _assembler()
    pts = np.ones((10, 4), np.float32) * 5
    before, after = np.full((9, 16, 3), 1, np.uint8), np.full((9, 16, 3), 2, np.uint8)
    asm.add_image("CAM_FRONT", 960_000_000, before)
    asm.add_image("CAM_FRONT", 1_040_000_000, after)
    frame, _ = asm.add_cloud(1_000_000_000, pts)
    assert frame.camera_present[0] and (frame.pixels()[0] == 1).all()
    asm.add_image("CAM_BACK", 1_090_000_000, after)  # only an image after the next sweep: left out, with a note
    frame, notes = asm.add_cloud(1_050_000_000, pts)
    assert (frame.pixels()[0] == 2).all() and not frame.camera_present[3] and "CAM_BACK:image_after_sweep" in notes


@pytest.mark.parametrize("stamps, reason", [
    ([2.0, 2.0], "duplicate_stamp"),
    ([2.0, 1.95], "out_of_order"),
])
def test_bad_stamps_are_dropped_with_a_reason(stamps, reason):
    asm = _assembler()
    asm.add_cloud(int(stamps[0] * 1e9), np.ones((5, 4), np.float32) * 5)
    with pytest.raises(Dropped) as e:
        asm.add_cloud(int(stamps[1] * 1e9), np.ones((5, 4), np.float32) * 5)
    assert e.value.reason == reason


def test_time_reset_clears_the_history():
    asm = _assembler()
    asm.add_cloud(int(10e9), np.ones((5, 4), np.float32) * 5)
    frame, notes = asm.add_cloud(int(2e9), np.ones((5, 4), np.float32) * 5)  # bag loop: history cleared
    assert notes == ["time_reset"] and (frame.cloud()[:, 4] == 0).all()


def reference_cloud(key_sweep, earlier):
    """The multi-sweep cloud as numpy builds it: each sweep through remove_close, then moved by a float64 matrix
    product. earlier: [(points as received, key LiDAR <- that sweep's LiDAR, lag)]."""
    def remove_close_np(points):
        return points[~((np.abs(points[:, 0]) < 1.0) & (np.abs(points[:, 1]) < 1.0))]

    clouds = [np.c_[remove_close_np(key_sweep), np.zeros(len(remove_close_np(key_sweep)), np.float32)]]
    for points, t, lag in earlier:
        kept = remove_close_np(points)
        xyz = kept[:, :3].astype(np.float64) @ t[:3, :3].T + t[:3, 3]
        clouds.append(np.c_[xyz.astype(np.float32), kept[:, 3], np.full(len(kept), lag, np.float32)])
    return np.concatenate(clouds).astype(np.float32)


def _random_sweep(rng, n):
    """Points out to 70 m, a fifth of them within 1.5 m of the sensor (|x|, |y| on both sides of 1 m)."""
    pts = np.c_[rng.uniform(-70, 70, (n, 2)), rng.uniform(-3, 3, n), rng.uniform(0, 255, n)].astype(np.float32)
    pts[: n // 5, :2] = rng.uniform(-1.5, 1.5, (n // 5, 2))
    pts[:4, :2] = [[1.0, 0.5], [-1.0, 0.2], [0.3, -1.0], [np.nextafter(np.float32(1), np.float32(0)), 0.0]]
    return pts


def _random_pose(rng):
    return make_transform(rot_z(rng.uniform(-np.pi, np.pi)), rng.uniform(-500, 500, 3))


def test_multisweep_cloud_equals_the_numpy_reference():
    rng = np.random.default_rng(7)
    for _ in range(5):
        key = _random_sweep(rng, 3000)
        earlier = [(_random_sweep(rng, int(rng.integers(0, 3000))), _random_pose(rng), float(rng.uniform(0, 0.3)))
                   for _ in range(int(rng.integers(0, 6)))]
        cloud = multisweep_cloud(remove_close(key), [(remove_close(p), t, lag) for p, t, lag in earlier])
        ref = reference_cloud(key, earlier)
        assert cloud.shape == ref.shape and cloud.dtype == np.float32
        np.testing.assert_allclose(cloud, ref, rtol=0, atol=1e-6)
    as_float64 = _random_sweep(rng, 1000).astype(np.float64)  # the near test in the points' own precision
    as_float64[0, :2] = [1 - 1e-9, 0.0]  # near in float64, though 1.0 in float32
    np.testing.assert_array_equal(remove_close(as_float64), reference_cloud(as_float64, [])[:, :4])


def test_stream_assembly_equals_the_numpy_reference():
    """A random drive, sweeps with and without a frame of their own: every frame's cloud is the reference cloud of
    the raw sweeps, moved through the poses the assembler was given."""
    rng = np.random.default_rng(8)
    b_l = _random_pose(rng) @ make_transform(np.eye(3), [0.9, 0.0, 1.8])
    asm = FrameAssembler(CAMERAS, Calibration(b_l, {}, {}), AssemblerConfig(n_sweeps=6))
    raw, poses = [], {}
    for i in range(20):
        stamp = 1_000_000_000 + i * 50_000_000
        poses[stamp] = make_transform(rot_z(0.01 * i), [2.0 * i, 0.1 * i * i, 0.0])
        asm.add_pose(stamp, poses[stamp])
        points = _random_sweep(rng, 2000)
        if i % 3 == 1:
            asm.add_sweep(stamp, points)
        else:
            frame, _ = asm.add_cloud(stamp, points)
            lidar_from_map = invert_rigid(poses[stamp] @ b_l)
            earlier = [(p, lidar_from_map @ poses[s] @ b_l, (stamp - s) * 1e-9) for s, p in reversed(raw[-5:])]
            np.testing.assert_allclose(frame.cloud(), reference_cloud(points, earlier), rtol=0, atol=1e-6)
        raw.append((stamp, points))
