"""Replay a bag through the node over DDS and record its outputs.

    ros2 launch fusion_prune_ros replay.launch.py bag:=/path/scene.bag out:=/path/outputs.bag rate:=0.5

Starts the node (configured and activated by events, as in fusion_prune.launch.py), a recorder of the node's
outputs, and `fusion-prune play` (the bag player of this package, for machines without `ros2 bag`; on a ROS 2
machine `ros2 bag play` works the same). When the player finishes, everything shuts down.
"""
from launch import LaunchDescription
from launch.actions import (DeclareLaunchArgument, EmitEvent, ExecuteProcess, RegisterEventHandler,
                            SetEnvironmentVariable, TimerAction)
from launch.event_handlers import OnProcessExit
from launch.events import Shutdown, matches_action
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import LifecycleNode
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState
from launch_ros.substitutions import FindPackageShare
from lifecycle_msgs.msg import Transition


def generate_launch_description() -> LaunchDescription:
    share = FindPackageShare("fusion_prune_ros")
    arguments = [
        DeclareLaunchArgument("bag", description="rosbag2 to play (fusion-prune to-bag writes one)"),
        DeclareLaunchArgument("out", description="bag to record the node's outputs into (must not exist)"),
        DeclareLaunchArgument("rate", default_value="1.0"),
        DeclareLaunchArgument("profile", default_value=PathJoinSubstitution([share, "config", "profiles",
                                                                             "default.yaml"])),
        DeclareLaunchArgument("latency_budget_ms", default_value="200.0"),
        DeclareLaunchArgument("backend", default_value="auto"),
    ]
    node = LifecycleNode(
        package="fusion_prune_ros", executable="fusion_prune_node", name="fusion_prune", namespace="",
        output="screen",
        parameters=[PathJoinSubstitution([share, "config", "fusion_prune.yaml"]), {
            "profile": LaunchConfiguration("profile"), "backend": LaunchConfiguration("backend"),
            "latency_budget_ms": LaunchConfiguration("latency_budget_ms")}])
    configure = EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(node),
                                            transition_id=Transition.TRANSITION_CONFIGURE))
    recorder = ExecuteProcess(cmd=["fusion-prune", "record", "--out", LaunchConfiguration("out"),
                                   "--duration", "86400"], output="screen")
    player = ExecuteProcess(cmd=["fusion-prune", "play", LaunchConfiguration("bag"), "--rate",
                                 LaunchConfiguration("rate"), "--wait-for-subscribers", "10"], output="screen")
    start_playing = RegisterEventHandler(OnStateTransition(
        target_lifecycle_node=node, goal_state="active", entities=[TimerAction(period=1.0, actions=[player])]))
    activate = RegisterEventHandler(OnStateTransition(
        target_lifecycle_node=node, goal_state="inactive",
        entities=[EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(node),
                                              transition_id=Transition.TRANSITION_ACTIVATE))]))
    stop = RegisterEventHandler(OnProcessExit(target_action=player, on_exit=[
        TimerAction(period=2.0, actions=[EmitEvent(event=Shutdown(reason="bag finished"))])]))
    fastdds = SetEnvironmentVariable("FASTDDS_DEFAULT_PROFILES_FILE",
                                     PathJoinSubstitution([share, "config", "fastdds.xml"]))
    return LaunchDescription([*arguments, fastdds, node, recorder, activate, start_playing, stop, configure])
