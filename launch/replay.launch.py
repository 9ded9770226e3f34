"""Replay a bag through the node over DDS and record its outputs.

    ros2 launch fusion_prune_ros replay.launch.py bag:=/path/scene.bag out:=/path/outputs.bag rate:=0.5
        profile:=/path/profile.yaml params_file:=/path/params.yaml   (optional: the shipped ones by default)

Starts the node (configured and activated by events, as in fusion_prune.launch.py), a recorder of the node's
outputs, and `fusion-prune play` (the bag player of this package, for machines without `ros2 bag`; on a ROS 2
machine `ros2 bag play` works the same). When the player finishes, everything shuts down (the recorder on SIGINT,
which closes its bag); so does the launch when the node exits. `fusion-prune record` / `play` run with the
launch's own Python (`python -m fusion_prune_ros.cli`), so they need not be on PATH (under colcon they are not).
"""
import sys

from launch import LaunchDescription
from launch.actions import (DeclareLaunchArgument, EmitEvent, ExecuteProcess, OpaqueFunction, RegisterEventHandler,
                            SetEnvironmentVariable, TimerAction)
from launch.event_handlers import OnProcessExit
from launch.events import Shutdown, matches_action
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import LifecycleNode
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare
from lifecycle_msgs.msg import Transition


CLI = [sys.executable, "-m", "fusion_prune_ros.cli"]


def _shutdown_unless_shutting_down(context):
    """A second Shutdown event (the node exiting because the launch is already stopping) makes launch_ros raise
    'Cannot shutdown a ROS adapter that is not running' and the launch exit 1."""
    return [] if context.is_shutdown else [EmitEvent(event=Shutdown(reason="fusion_prune_node exited"))]


def generate_launch_description() -> LaunchDescription:
    share = FindPackageShare("fusion_prune_ros")
    arguments = [
        DeclareLaunchArgument("bag", description="rosbag2 to play (fusion-prune to-bag writes one)"),
        DeclareLaunchArgument("out", description="bag to record the node's outputs into (must not exist)"),
        DeclareLaunchArgument("rate", default_value="1.0"),
        DeclareLaunchArgument("profile", default_value=PathJoinSubstitution([share, "config", "profiles",
                                                                             "default.yaml"])),
        DeclareLaunchArgument("params_file", default_value=PathJoinSubstitution([share, "config",
                                                                                 "fusion_prune.yaml"]),
                              description="node parameters (topics, thresholds, hysteresis)"),
        DeclareLaunchArgument("latency_budget_ms", default_value="200.0"),
        DeclareLaunchArgument("backend", default_value="auto"),
    ]
    node = LifecycleNode(
        package="fusion_prune_ros", executable="fusion_prune_node", name="fusion_prune", namespace="",
        output="screen",
        parameters=[LaunchConfiguration("params_file"), {
            "profile": ParameterValue(LaunchConfiguration("profile"), value_type=str),
            "backend": ParameterValue(LaunchConfiguration("backend"), value_type=str),
            "latency_budget_ms": ParameterValue(LaunchConfiguration("latency_budget_ms"), value_type=float)}],
        on_exit=[OpaqueFunction(function=_shutdown_unless_shutting_down)])
    configure = EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(node),
                                            transition_id=Transition.TRANSITION_CONFIGURE))
    recorder = ExecuteProcess(cmd=[*CLI, "record", "--out", LaunchConfiguration("out"),
                                   "--duration", "86400"], output="screen")
    player = ExecuteProcess(cmd=[*CLI, "play", LaunchConfiguration("bag"), "--rate",
                                 LaunchConfiguration("rate"), "--wait-for-subscribers", "10"], output="screen")
    start_playing = RegisterEventHandler(OnStateTransition(
        target_lifecycle_node=node, goal_state="active", entities=[TimerAction(period=1.0, actions=[player])]))
    activate = RegisterEventHandler(OnStateTransition(
        target_lifecycle_node=node, goal_state="inactive",
        entities=[EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(node),
                                              transition_id=Transition.TRANSITION_ACTIVATE))]))
    stop = RegisterEventHandler(OnProcessExit(target_action=player, on_exit=[
        TimerAction(period=2.0, actions=[EmitEvent(event=Shutdown(reason="bag finished"))])]))
    # Fast DDS 2.x (Jazzy) reads FASTRTPS_..., 3.x FASTDDS_...: set both.
    fastdds = [SetEnvironmentVariable(var, PathJoinSubstitution([share, "config", "fastdds.xml"]))
               for var in ("FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_DEFAULT_PROFILES_FILE")]
    return LaunchDescription([*arguments, *fastdds, node, recorder, activate, start_playing, stop, configure])
