"""Replay a bag through the node over DDS and record its outputs.

    ros2 launch fusion_prune_ros replay.launch.py bag:=/path/scene out:=/path/outputs rate:=0.5
        profile:=/path/profile.yaml params_file:=/path/params.yaml   (optional: the shipped ones by default)

Includes fusion_prune.launch.py for the node, so a replay starts it exactly as a live launch does, and adds a
recorder of the node's outputs and `fusion-prune play` (the bag player of this package, for machines without
`ros2 bag`; on a ROS 2 machine `ros2 bag play` works the same). The player starts once the node is active.

By default the node runs on the bag's time (use_sim_time; the player publishes /clock), as it would under
`ros2 bag play --clock`: what it stamps from its clock (diagnostics, label info) then lines up with the bag's header
stamps at any rate. A replay is a batch job, so it ends by itself and its exit code says whether it worked: once
the player has played the bag everything stops (the recorder on SIGINT, which closes its bag) with exit code 0; a
missing bag, an existing `out`, or a player, recorder or node that fails ends it with exit code 1 and a last line
naming the failure. `fusion-prune record` / `play` run with the launch's own Python (`python -m
fusion_prune_ros.cli`), so they need not be on PATH (under colcon they are not).
"""
import os
import sys
from pathlib import Path

from launch import LaunchDescription
from launch.actions import (DeclareLaunchArgument, ExecuteProcess, IncludeLaunchDescription, OpaqueFunction,
                            RegisterEventHandler, TimerAction)
from launch.conditions import IfCondition
from launch.launch_description_sources import PythonLaunchDescriptionSource, load_python_launch_file_as_module
from launch.substitutions import LaunchConfiguration
from launch_ros.event_handlers import OnStateTransition

LIVE = Path(__file__).with_name("fusion_prune.launch.py")
live = load_python_launch_file_as_module(str(LIVE))  # its EndsLaunch and fail, for the player and the recorder
CLI = [sys.executable, "-m", "fusion_prune_ros.cli"]


def _check_paths(context):
    """Fail at once on the mistakes the player and the recorder would only report after the node has spent its
    configure (loading, maybe building, every variant): the player starts only once the node is active."""
    bag, out = (LaunchConfiguration(name).perform(context) for name in ("bag", "out"))
    if not os.path.exists(bag):
        live.fail(f"bag not found: {bag}")
    if os.path.exists(out):
        live.fail(f"out already exists: {out} (the recorder does not overwrite)")


def _player(context):
    """Built here, not declared, because --clock is a flag: present or absent, never an argument's value."""
    clock = ["--clock"] if IfCondition(LaunchConfiguration("use_sim_time")).evaluate(context) else []
    player = ExecuteProcess(name="player", output="screen", cmd=[
        *CLI, "play", LaunchConfiguration("bag"), "--rate", LaunchConfiguration("rate"), *clock,
        "--wait-for-subscribers", "10"])
    # The grace period lets the node finish the last frames and the recorder write them before the shutdown.
    return [*live.EndsLaunch(player, "player", grace_s=2.0).handlers, player]


def generate_launch_description() -> LaunchDescription:
    arguments = [
        DeclareLaunchArgument("bag", description="rosbag2 (a directory) to play; fusion-prune to-bag writes one"),
        DeclareLaunchArgument("out", description="directory to record the node's outputs into (must not exist)"),
        DeclareLaunchArgument("rate", default_value="1.0", description="playback rate (1.0: as recorded)"),
        # Declared before the include so that this default, not the live one, applies and is shown.
        DeclareLaunchArgument("use_sim_time", default_value="true",
                              description="run the node on the bag's time (the player publishes /clock); false: "
                                          "on the system clock, and the player publishes no /clock"),
    ]
    node = IncludeLaunchDescription(PythonLaunchDescriptionSource(str(LIVE)),
                                    launch_arguments={"use_sim_time": LaunchConfiguration("use_sim_time")}.items())
    # A day: the recorder runs until the launch stops it with SIGINT.
    recorder = ExecuteProcess(name="recorder", output="screen", cmd=[
        *CLI, "record", "--out", LaunchConfiguration("out"), "--duration", "86400"])
    # The included launch file has the only lifecycle node. Once: a node deactivated and activated again by hand
    # must not start a second player. The player waits for the node's subscriptions; the second before it lets the
    # recorder's subscriptions match the node's outputs, which exist only since configure.
    start_playing = RegisterEventHandler(OnStateTransition(
        goal_state="active", handle_once=True,
        entities=[TimerAction(period=1.0, actions=[OpaqueFunction(function=_player)])]))
    return LaunchDescription([*arguments, OpaqueFunction(function=_check_paths), node,
                              *live.EndsLaunch(recorder, "recorder").handlers, recorder, start_playing])
