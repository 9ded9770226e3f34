"""Live detection: the fusion_prune lifecycle node, configured and activated by launch events.

    ros2 launch fusion_prune_ros fusion_prune.launch.py profile:=/path/profile.yaml latency_budget_ms:=120

Jazzy's launch_ros has no autostart for lifecycle nodes, so the launch file emits the transitions itself:
configure at start, activate once the node reports 'inactive' (configure loads and warms up every variant first).
With build_only:=true the node builds and caches every variant's TensorRT engine during configure and exits.
The shipped Fast DDS profile (shared memory for large point clouds) is loaded through FASTRTPS_DEFAULT_PROFILES_FILE
(Fast DDS 2.x, Jazzy) and FASTDDS_DEFAULT_PROFILES_FILE (3.x).

A launch must not outlive the node, nor report success when the node could not start: a failed configure (a wrong
profile, a missing model) or a node that dies ends the launch with exit code 1 and a last line naming the failure;
a node that exits 0 (build_only) ends it with exit code 0. Jazzy's launch has no other way to set its exit code than
an exception raised while it handles an event, hence `fail`. replay.launch.py includes this file and uses
`EndsLaunch` for its own processes.
"""
import re

from launch import LaunchDescription
from launch.actions import (DeclareLaunchArgument, EmitEvent, OpaqueFunction, RegisterEventHandler,
                            SetEnvironmentVariable, TimerAction)
from launch.conditions import UnlessCondition
from launch.event_handlers import OnProcessExit, OnProcessIO
from launch.events import Shutdown, matches_action
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import LifecycleNode
from launch_ros.event_handlers import OnStateTransition
from launch_ros.events.lifecycle import ChangeState, StateTransition
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare
from lifecycle_msgs.msg import Transition

# The "[ERROR] [1712345678.123] [fusion_prune]: " rcutils puts before a ROS log message.
_ROS_LOG_PREFIX = re.compile(r"^(\[[^\]]*\] )*\[[^\]]*\]: ")


def fail(message: str):
    """Stop the launch with exit code 1: launch logs 'Caught exception in launch ...: <message>' and shuts down."""
    raise RuntimeError(message)


def _shutdown_unless_shutting_down(context, reason: str):
    """A second Shutdown event (a process exiting because the launch is already stopping) makes launch_ros raise
    'Cannot shutdown a ROS adapter that is not running' and the launch exit 1."""
    return [] if context.is_shutdown else [EmitEvent(event=Shutdown(reason=reason))]


class EndsLaunch:
    """Event handlers for a process the launch cannot go on without: when it exits on its own (not because the
    launch is stopping), the launch fails if the exit code is non-zero, and otherwise shuts down `grace_s` seconds
    later. The failure message quotes the process's last line on stderr (its one-line error, a traceback's last
    line), since launch prints the process's own output far above its final error."""

    def __init__(self, process, name: str, grace_s: float = 0.0):
        self.name = name
        self.grace_s = grace_s
        self.last_error = ""
        self.handlers = [RegisterEventHandler(OnProcessIO(target_action=process, on_stderr=self._keep_last_line)),
                         RegisterEventHandler(OnProcessExit(target_action=process, on_exit=self._on_exit))]

    def _keep_last_line(self, event) -> None:
        lines = event.text.decode(errors="replace").strip().splitlines()
        if lines:
            self.last_error = _ROS_LOG_PREFIX.sub("", lines[-1].strip())

    def fail(self, what: str):
        fail(f"{what}: {self.last_error}" if self.last_error else what)

    def _on_exit(self, event, context):
        if context.is_shutdown:
            return None
        if event.returncode != 0:
            self.fail(f"{self.name} exited with code {event.returncode}")
        return [TimerAction(period=self.grace_s, actions=[OpaqueFunction(
            function=_shutdown_unless_shutting_down, kwargs={"reason": f"{self.name} finished"})])]


def generate_launch_description() -> LaunchDescription:
    share = FindPackageShare("fusion_prune_ros")
    arguments = [
        DeclareLaunchArgument("profile", default_value=PathJoinSubstitution([share, "config", "profiles",
                                                                             "default.yaml"]),
                              description="profile YAML listing the variants"),
        DeclareLaunchArgument("params_file", default_value=PathJoinSubstitution([share, "config",
                                                                                 "fusion_prune.yaml"]),
                              description="node parameters (topics, thresholds, hysteresis)"),
        DeclareLaunchArgument("latency_budget_ms", default_value="200.0",
                              description="end-to-end latency budget per frame in ms: over it, the node steps "
                                          "down to lighter variants"),
        DeclareLaunchArgument("backend", default_value="auto", description="auto | tensorrt | onnxruntime | torch"),
        DeclareLaunchArgument("use_sim_time", default_value="false",
                              description="follow /clock (a bag player's time) instead of the system clock"),
        DeclareLaunchArgument("build_only", default_value="false",
                              description="build and cache every variant's engine during configure, then exit"),
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
        }])
    node_exit = EndsLaunch(node, "fusion_prune_node")
    configure = EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(node),
                                            transition_id=Transition.TRANSITION_CONFIGURE))
    activate = RegisterEventHandler(OnStateTransition(
        target_lifecycle_node=node, goal_state="inactive",
        entities=[EmitEvent(event=ChangeState(lifecycle_node_matcher=matches_action(node),
                                              transition_id=Transition.TRANSITION_ACTIVATE))]),
        condition=UnlessCondition(LaunchConfiguration("build_only")))
    # A failed configure leaves the node running but unconfigured ('unconfigured' when on_configure returns
    # FAILURE, 'errorprocessing' when it raises): nothing would ever activate it.
    configure_failed = RegisterEventHandler(OnStateTransition(
        matcher=lambda event: (isinstance(event, StateTransition) and event.action is node
                               and event.start_state == "configuring" and event.goal_state != "inactive"),
        entities=[OpaqueFunction(function=lambda context: node_exit.fail("fusion_prune failed to configure"))]))
    # Fast DDS 2.x (Jazzy) reads FASTRTPS_..., 3.x FASTDDS_...: set both.
    fastdds = [SetEnvironmentVariable(var, PathJoinSubstitution([share, "config", "fastdds.xml"]))
               for var in ("FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_DEFAULT_PROFILES_FILE")]
    return LaunchDescription([*arguments, *fastdds, *node_exit.handlers, configure_failed, activate, node, configure])
