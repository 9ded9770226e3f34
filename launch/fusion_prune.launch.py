"""Live detection: the fusion_prune lifecycle node, configured and activated by launch events.

    ros2 launch fusion_prune_ros fusion_prune.launch.py profile:=/path/profile.yaml latency_budget_ms:=120

Jazzy's launch_ros has no autostart for lifecycle nodes, so the launch file emits the transitions itself:
configure at start, activate once the node reports 'inactive' (configure loads and warms up every variant first).
With build_only:=true the node builds and caches every variant's TensorRT engine during configure and exits.
The shipped Fast DDS profile (shared memory for large point clouds) is loaded through FASTDDS_DEFAULT_PROFILES_FILE.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, EmitEvent, RegisterEventHandler, SetEnvironmentVariable
from launch.conditions import UnlessCondition
from launch.events import matches_action
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import LifecycleNode
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState
from launch_ros.substitutions import FindPackageShare
from lifecycle_msgs.msg import Transition


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
        parameters=[LaunchConfiguration("params_file"), {
            "profile": LaunchConfiguration("profile"),
            "latency_budget_ms": LaunchConfiguration("latency_budget_ms"),
            "backend": LaunchConfiguration("backend"),
            "use_sim_time": LaunchConfiguration("use_sim_time"),
            "build_only": LaunchConfiguration("build_only"),
        }])
    configure = EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(node),
                                            transition_id=Transition.TRANSITION_CONFIGURE))
    activate = RegisterEventHandler(OnStateTransition(
        target_lifecycle_node=node, goal_state="inactive",
        entities=[EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(node),
                                              transition_id=Transition.TRANSITION_ACTIVATE))]),
        condition=UnlessCondition(LaunchConfiguration("build_only")))
    fastdds = SetEnvironmentVariable("FASTDDS_DEFAULT_PROFILES_FILE",
                                     PathJoinSubstitution([share, "config", "fastdds.xml"]))
    return LaunchDescription([*arguments, fastdds, node, activate, configure])
