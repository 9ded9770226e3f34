"""Live detection: the fusion_prune lifecycle node, configured and activated by launch events.

    ros2 launch fusion_prune_ros fusion_prune.launch.py profile:=/path/profile.yaml latency_budget_ms:=120

Jazzy's launch_ros has no autostart for lifecycle nodes, so the launch file emits the transitions itself:
configure at start, activate once the node reports 'inactive' (configure loads and warms up every variant first).
With build_only:=true the node builds and caches every variant's TensorRT engine during configure and exits.
The shipped Fast DDS profile (shared memory for large point clouds) is loaded through FASTRTPS_DEFAULT_PROFILES_FILE
(Fast DDS 2.x, Jazzy) and FASTDDS_DEFAULT_PROFILES_FILE (3.x).
When the node exits (build_only, a failed start, SIGINT) the launch shuts down with it instead of waiting on a
lifecycle service that no longer answers.
"""
from launch import LaunchDescription
from launch.actions import (DeclareLaunchArgument, EmitEvent, OpaqueFunction, RegisterEventHandler,
                            SetEnvironmentVariable)
from launch.conditions import UnlessCondition
from launch.events import Shutdown, matches_action
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import LifecycleNode
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare
from lifecycle_msgs.msg import Transition


def _shutdown_unless_shutting_down(context):
    """A second Shutdown event (the node exiting because the launch is already stopping) makes launch_ros raise
    'Cannot shutdown a ROS adapter that is not running' and the launch exit 1."""
    return [] if context.is_shutdown else [EmitEvent(event=Shutdown(reason="fusion_prune_node exited"))]


def generate_launch_description() -> LaunchDescription:
    share = FindPackageShare("fusion_prune_ros")
    arguments = [
        DeclareLaunchArgument("profile", default_value=PathJoinSubstitution([share, "config", "profiles",
                                                                             "default.yaml"]),
                              description="profile YAML listing the variants"),
        DeclareLaunchArgument("params_file", default_value=PathJoinSubstitution([share, "config",
                                                                                 "fusion_prune.yaml"]),
                              description="node parameters (topics, thresholds, hysteresis)"),
        DeclareLaunchArgument("latency_budget_ms", default_value="200.0"),
        DeclareLaunchArgument("backend", default_value="auto", description="auto | tensorrt | onnxruntime | torch"),
        DeclareLaunchArgument("use_sim_time", default_value="false"),
        DeclareLaunchArgument("build_only", default_value="false"),
    ]
    node = LifecycleNode(
        package="fusion_prune_ros", executable="fusion_prune_node", name="fusion_prune", namespace="",
        output="screen",
        # Typed: launch would otherwise guess from the text, and latency_budget_ms:=150 (an integer) makes the
        # node's declaration of a double parameter fail.
        parameters=[LaunchConfiguration("params_file"), {
            "profile": ParameterValue(LaunchConfiguration("profile"), value_type=str),
            "latency_budget_ms": ParameterValue(LaunchConfiguration("latency_budget_ms"), value_type=float),
            "backend": ParameterValue(LaunchConfiguration("backend"), value_type=str),
            "use_sim_time": ParameterValue(LaunchConfiguration("use_sim_time"), value_type=bool),
            "build_only": ParameterValue(LaunchConfiguration("build_only"), value_type=bool),
        }],
        on_exit=[OpaqueFunction(function=_shutdown_unless_shutting_down)])
    configure = EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(node),
                                            transition_id=Transition.TRANSITION_CONFIGURE))
    activate = RegisterEventHandler(OnStateTransition(
        target_lifecycle_node=node, goal_state="inactive",
        entities=[EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(node),
                                              transition_id=Transition.TRANSITION_ACTIVATE))]),
        condition=UnlessCondition(LaunchConfiguration("build_only")))
    # Fast DDS 2.x (Jazzy) reads FASTRTPS_..., 3.x FASTDDS_...: set both.
    fastdds = [SetEnvironmentVariable(var, PathJoinSubstitution([share, "config", "fastdds.xml"]))
               for var in ("FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_DEFAULT_PROFILES_FILE")]
    return LaunchDescription([*arguments, *fastdds, node, activate, configure])
