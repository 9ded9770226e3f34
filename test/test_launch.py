"""The launch files, run for real: launch.LaunchService starts the node through the ament index, drives its lifecycle
with events, and stops it like Ctrl-C in a terminal does.

Needs `launch` and `launch_ros` (ROS 2 Jazzy; not on PyPI, see the README), so the whole module is skipped where they
do not import. Written with plain pytest rather than launch_pytest: Jazzy's launch_pytest breaks on the pytest this
repo pins (its fixtures fail with pytest >= 8.4, and the launch_testing plugin it depends on does not even load with
pytest 9). Each launch runs as a child process in its own session (as `ros2 launch` does in a terminal), with its own
ROS_DOMAIN_ID, ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST and a ROS_LOG_DIR in the test's folder.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

try:
    from launch import LaunchContext, LaunchService  # noqa: F401  (PyPI's unrelated `launch` lacks LaunchService)
    from launch.actions import ExecuteProcess
    from launch.launch_description_sources import (get_launch_description_from_python_launch_file,
                                                   load_python_launch_file_as_module)
    from launch.utilities import perform_substitutions
    import launch_ros.actions  # noqa: F401  (imports rclpy, lifecycle_msgs and composition_interfaces)
except ImportError as e:
    pytest.skip(f"ROS 2 launch / launch_ros are not importable ({e}); they are not on PyPI: install them from "
                f"their Jazzy sources to run the launch tests (see the README)", allow_module_level=True)
pytest.importorskip("vision_msgs.msg", reason="vision_msgs is not built: run `fusion-prune ros-setup`")

from lifecycle_msgs.srv import GetState  # noqa: E402

from fusion_prune_ros.ros.remote import NodeClient, process_group_alive  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "fusion_prune_ros"
LAUNCH = REPO / "launch" / "fusion_prune.launch.py"
REPLAY = REPO / "launch" / "replay.launch.py"
_domains = iter(range(2 + os.getpid() % 20, 30))  # test_node_ros.py uses 30 and up

# `ros2 launch FILE name:=value ...` without ros2cli: the launch arguments go to the included file, none to rcl.
RUNNER = """
import sys
from launch import LaunchDescription, LaunchService
from launch.actions import IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
path, args = sys.argv[1], [a.split(":=", 1) for a in sys.argv[2:]]
del sys.argv[1:]
service = LaunchService()
service.include_launch_description(LaunchDescription([
    IncludeLaunchDescription(PythonLaunchDescriptionSource(path), launch_arguments=args)]))
sys.exit(service.run())
"""


@pytest.fixture
def ros_env(tmp_path, monkeypatch):
    """This test's domain, loopback discovery and log folder, for this process and the launch it starts."""
    domain = next(_domains)
    monkeypatch.setenv("ROS_DOMAIN_ID", str(domain))
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    monkeypatch.setenv("ROS_LOG_DIR", str(tmp_path / "roslog"))
    return domain


@pytest.fixture
def prefix(tmp_path):
    """An install prefix as `pip install .` or colcon lays it out (setup.py's data_files), made from this checkout,
    so launch_ros finds the package through the ament index however this environment installed it (an editable
    install has no data_files): the index marker, share/fusion_prune_ros/{package.xml,config,launch} and the
    executable lib/fusion_prune_ros/fusion_prune_node, here a wrapper around this environment's console script."""
    node = shutil.which("fusion_prune_node", path=str(Path(sys.executable).parent)) or shutil.which("fusion_prune_node")
    if node is None:
        pytest.skip("the fusion_prune_node console script is not installed (pip install -e .[ros])")
    root = tmp_path / "prefix"
    index = root / "share" / "ament_index" / "resource_index" / "packages"
    index.mkdir(parents=True)
    (index / PACKAGE).touch()
    share = root / "share" / PACKAGE
    share.mkdir()
    shutil.copy(REPO / "package.xml", share)
    for folder in ("config", "launch"):
        (share / folder).symlink_to(REPO / folder)
    lib = root / "lib" / PACKAGE
    lib.mkdir(parents=True)
    exe = lib / "fusion_prune_node"
    exe.write_text(f'#!/bin/sh\nexec "{node}" "$@"\n')
    exe.chmod(0o755)
    return root


class Launch:
    """A launch file running in a child process and session of its own, its output in a file."""

    def __init__(self, path: Path, args: dict, prefix: Path, log: Path):
        env = dict(os.environ, AMENT_PREFIX_PATH=os.pathsep.join(
            filter(None, [str(prefix), os.environ.get("AMENT_PREFIX_PATH")])))
        self.log_path = log
        self._log = open(log, "w")
        self.proc = subprocess.Popen([sys.executable, "-c", RUNNER, str(path),
                                      *(f"{k}:={v}" for k, v in args.items())],
                                     env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text()

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the launch did not exit within {timeout:.0f} s:\n{self.output()[-3000:]}")

    def interrupt(self, timeout: float = 30.0) -> int:
        """Ctrl-C in a terminal: SIGINT to the whole process group. (SIGINT to the launch process alone is not the
        same: launch then leaves the signal to the terminal, and escalates to SIGTERM after 5 s.)"""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
        return self.wait(timeout)

    def session_alive(self) -> bool:
        return process_group_alive(self.proc.pid)

    def close(self) -> None:
        """Whatever happened, nothing of this launch outlives the test."""
        if self.session_alive():
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self._log.close()

    def assert_all_exited(self) -> None:
        deadline = time.time() + 5
        while self.session_alive():
            assert time.time() < deadline, f"processes of the launch are still running:\n{self.output()[-3000:]}"
            time.sleep(0.1)


@pytest.fixture
def start(prefix, tmp_path, ros_env):
    launches = []

    def start(path: Path, **args) -> Launch:
        launches.append(Launch(path, args, prefix, tmp_path / f"launch{len(launches)}.out"))
        return launches[-1]

    yield start
    for launch in launches:
        launch.close()


def _wait_for_state(client: NodeClient, launch: Launch, goal: str, timeout: float) -> str:
    deadline = time.time() + timeout
    state = None
    while time.time() < deadline and launch.proc.poll() is None:
        try:
            state = client.call(GetState, "/fusion_prune/get_state", GetState.Request(),
                                timeout=max(1.0, deadline - time.time())).current_state.label
        except Exception as e:  # the service is not up yet
            state = repr(e)
        if state == goal:
            return state
        time.sleep(0.3)
    pytest.fail(f"/fusion_prune is {state!r}, not {goal!r}, after {timeout:.0f} s (launch exit code "
                f"{launch.proc.poll()}):\n{launch.output()[-3000:]}")


def _arguments(path: Path) -> dict:
    return {a.name: a for a in get_launch_description_from_python_launch_file(str(path)).get_launch_arguments()}


def _default(argument) -> str:
    return perform_substitutions(LaunchContext(), argument.default_value)


def test_launch_files_parse_and_declare_their_arguments(ros_env):
    live = {"profile", "params_file", "latency_budget_ms", "backend", "use_sim_time", "build_only"}
    args = _arguments(LAUNCH)
    assert set(args) == live
    assert all(a.default_value is not None for a in args.values())
    replay = _arguments(REPLAY)  # with the arguments of the live launch file it includes
    assert set(replay) == live | {"bag", "out", "rate"}
    assert {name for name, a in replay.items() if a.default_value is None} == {"bag", "out"}  # required
    # The replay runs the node on the player's /clock unless told otherwise.
    assert _default(replay["use_sim_time"]) == "true" and _default(args["use_sim_time"]) == "false"
    # What `ros2 launch --show-args` prints for each; launch's placeholder is "no description given".
    undescribed = [name for name, a in {**args, **replay}.items() if a.description in ("", "no description given")]
    assert not undescribed


def test_the_player_publishes_clock_only_for_a_node_on_sim_time(ros_env):
    replay = load_python_launch_file_as_module(str(REPLAY))
    for use_sim_time, clock in (("true", True), ("false", False)):
        context = LaunchContext()
        context.launch_configurations.update(bag="scene", rate="1.0", use_sim_time=use_sim_time)
        player = next(a for a in replay._player(context) if isinstance(a, ExecuteProcess))
        cmd = [perform_substitutions(context, part) for part in player.cmd]
        assert ("--clock" in cmd) == clock, cmd


def test_node_is_configured_activated_and_stopped_cleanly(shipped, start, ros_env):
    launch = start(LAUNCH, profile=shipped / "profiles" / "dense.yaml", backend="onnxruntime",
                   latency_budget_ms=150)  # an integer: the launch file must still pass a double
    client = NodeClient(ros_env, "test_launch")
    try:
        _wait_for_state(client, launch, "active", timeout=120)
        assert client.get_param("latency_budget_ms") == 150.0
        assert client.get_param("backend") == "onnxruntime"
    finally:
        client.close()
    assert launch.interrupt() == 0, launch.output()[-3000:]
    launch.assert_all_exited()
    out = launch.output()
    assert "process has finished cleanly" in out and "escalating to 'SIGTERM'" not in out, out[-3000:]


def test_build_only_configures_and_the_launch_exits_with_the_node(shipped, start, ros_env):
    launch = start(LAUNCH, profile=shipped / "profiles" / "dense.yaml", backend="onnxruntime", build_only="true")
    assert launch.wait(timeout=120) == 0, launch.output()[-3000:]
    launch.assert_all_exited()
    out = launch.output()
    assert "build_only: every variant is built and cached" in out and "process has died" not in out, out[-3000:]


def test_a_failed_configure_fails_the_launch(start, ros_env, tmp_path):
    missing = tmp_path / "no_such_profile.yaml"
    launch = start(LAUNCH, profile=missing, backend="onnxruntime")
    assert launch.wait(timeout=60) == 1, launch.output()[-3000:]
    launch.assert_all_exited()
    out = launch.output()
    assert "fusion_prune failed to configure" in out and str(missing) in out, out[-3000:]


def test_a_missing_bag_fails_the_replay_before_the_node_starts(start, ros_env, tmp_path):
    missing = tmp_path / "no_such_bag"
    launch = start(REPLAY, bag=missing, out=tmp_path / "outputs")
    assert launch.wait(timeout=30) == 1, launch.output()[-3000:]
    launch.assert_all_exited()
    out = launch.output()
    assert f"bag not found: {missing}" in out and "fusion_prune_node" not in out, out[-3000:]
    assert not (tmp_path / "outputs").exists()


def test_an_existing_out_fails_the_replay_before_the_node_starts(shipped, start, ros_env, tmp_path):
    out = tmp_path / "outputs"
    out.mkdir()
    launch = start(REPLAY, bag=shipped / "val_bag", out=out)
    assert launch.wait(timeout=30) == 1, launch.output()[-3000:]
    launch.assert_all_exited()
    log = launch.output()
    assert f"out already exists: {out}" in log and "fusion_prune_node" not in log, log[-3000:]


def test_a_failing_recorder_fails_the_replay(shipped, start, ros_env, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    out = blocker / "outputs"  # the recorder cannot create it
    launch = start(REPLAY, bag=shipped / "val_bag", out=out, profile=shipped / "profiles" / "dense.yaml",
                   backend="onnxruntime")
    assert launch.wait(timeout=60) == 1, launch.output()[-3000:]
    launch.assert_all_exited()
    log = launch.output()
    # The last line the recorder wrote, here its traceback's, names the cause.
    assert re.search(rf"recorder exited with code [1-9]\d*: .*{re.escape(str(out))}", log), log[-3000:]


def test_replay_records_the_node_outputs(shipped, start, ros_env, tmp_path):
    mcap_reader = pytest.importorskip("mcap.reader", reason="mcap is a test extra: pip install -e .[test]")
    decoder = pytest.importorskip("mcap_ros2.decoder", reason="mcap-ros2-support is a test extra")
    # The shipped parameters, with a score threshold the briefly trained model reaches, and staleness limits for
    # the bag's 2 Hz cameras played at half speed.
    values = yaml.safe_load((REPO / "config" / "fusion_prune.yaml").read_text())
    values["fusion_prune"]["ros__parameters"].update(score_threshold=0.05, lidar_max_age_s=0.4, camera_stale_s=0.6)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(values))
    out = tmp_path / "new" / "outputs"
    launch = start(REPLAY, bag=shipped / "val_bag", out=out, profile=shipped / "profiles" / "dense.yaml",
                   backend="onnxruntime", params_file=params, rate=0.5)
    client = NodeClient(ros_env, "test_launch")
    try:
        _wait_for_state(client, launch, "active", timeout=120)
        assert client.get_param("use_sim_time") is True  # the replay's default: the node follows the player's /clock
    finally:
        client.close()
    assert launch.wait(timeout=180) == 0, launch.output()[-3000:]  # it stops by itself when the bag is played
    launch.assert_all_exited()
    log = launch.output()
    assert "[player-" in log and "[recorder-" in log and "[python3-" not in log, log[-3000:]
    messages = boxes = 0
    with open(next(out.glob("*.mcap")), "rb") as f:
        reader = mcap_reader.make_reader(f, decoder_factories=[decoder.DecoderFactory()])
        for _, _, _, msg in reader.iter_decoded_messages(topics=["/fusion_prune/detections"]):
            messages += 1
            boxes += len(msg.detections)
    assert messages >= 1 and boxes >= 1, (messages, boxes, log[-3000:])
