"""Driving the node from another process, as an operator or a test does: start it, walk its lifecycle through
lifecycle_msgs/srv/ChangeState, set parameters through rcl_interfaces/srv/SetParameters, stop it with SIGINT.

Used by `fusion-prune demo` and by the real-ROS tests, so both exercise the node exactly as deployed.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import rclpy
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rcl_interfaces.srv import GetParameters, SetParameters
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node

from ..errors import UserError
from ..paths import share_file

FASTDDS_PROFILE = share_file("config/fastdds.xml")
# Fast DDS 2.x (ROS 2 Jazzy's 2.14) reads the first; Fast DDS 3.x (Kilted and later) the second. Measured here with
# the Jazzy wheels: only the first loads the profile (1 MB best-effort clouds: 30 of 30 delivered vs 12-15 of 30).
PROFILE_ENV_VARS = ("FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_DEFAULT_PROFILES_FILE")
NODE_NAME = "fusion_prune"
RESEND_S = 5.0  # an unanswered service request is sent again after this long (NodeClient.call)
TRANSITION_GOALS = {Transition.TRANSITION_CONFIGURE: "inactive", Transition.TRANSITION_ACTIVATE: "active",
                    Transition.TRANSITION_DEACTIVATE: "inactive", Transition.TRANSITION_CLEANUP: "unconfigured"}


def ros_env(domain: int, log_dir: Path) -> dict:
    """The environment every ROS process here runs with: DDS discovery on this machine only, its own domain, the
    shipped Fast DDS profile (shared memory for large clouds), logs in a folder of the run."""
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
               ROS_LOG_DIR=str(log_dir))
    if FASTDDS_PROFILE.is_file():
        env.update({var: str(FASTDDS_PROFILE) for var in PROFILE_ENV_VARS})
    return env


def process_group_alive(pgid: int) -> bool:
    """Is any process of this process group (a child started with start_new_session) still running?"""
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


class NodeProcess:
    """`fusion_prune_node` as a child process (its own session, so that stopping it stops everything it runs)."""

    def __init__(self, params: dict, domain: int, log_path: Path):
        exe = shutil.which("fusion_prune_node", path=str(Path(sys.executable).parent)) or shutil.which(
            "fusion_prune_node")
        if exe is None:
            raise UserError("fusion_prune_node is not installed (pip install -e .[ros])")
        args = [exe, "--ros-args"]
        for key, value in params.items():
            args += ["-p", f"{key}:={value}"]
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log = open(log_path, "w")
        self.proc = subprocess.Popen(args, env=ros_env(domain, log_path.parent / "roslog"), stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def stop(self, timeout: float = 20.0) -> int:
        """SIGINT (what ros2 launch sends); SIGKILL the whole session if it does not exit in time."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.log.close()

    def session_alive(self) -> bool:
        return process_group_alive(self.proc.pid)


class NodeClient:
    """An rclpy node in this process (its own context and domain) with a spinning executor thread."""

    def __init__(self, domain: int, name: str = "fusion_prune_driver"):
        os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
        if FASTDDS_PROFILE.is_file():
            for var in PROFILE_ENV_VARS:
                os.environ.setdefault(var, str(FASTDDS_PROFILE))
        self.ctx = rclpy.Context()
        rclpy.init(context=self.ctx, domain_id=domain)
        self.node = Node(name, context=self.ctx)
        self.executor = SingleThreadedExecutor(context=self.ctx)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def call(self, srv_type, service: str, request, timeout: float = 60.0, resend: bool = True):
        """The service's answer to `request`. A fresh client's first request can go unanswered for good: Fast DDS
        reports the service as available once the request topic is matched, and a server that has not yet matched
        the client's reply reader drops the reply (seen once in a few hundred calls here, a get_state of a node
        that had just started). So a request unanswered after RESEND_S seconds is sent again, `resend` being
        for requests that may run twice (queries); `transition` handles the others."""
        client = self.node.create_client(srv_type, service)
        if not client.wait_for_service(timeout_sec=timeout):
            raise UserError(f"service {service} did not appear within {timeout:.0f} s")
        deadline = time.time() + timeout
        while True:
            future = client.call_async(request)
            again = time.time() + RESEND_S if resend else deadline
            while not future.done():
                if time.time() > deadline:
                    raise UserError(f"service {service} did not answer within {timeout:.0f} s")
                if time.time() > again:
                    break
                time.sleep(0.02)
            if future.done():
                return future.result()

    def transition(self, transition_id: int, node: str = NODE_NAME, timeout: float = 60.0) -> bool:
        """Request a lifecycle transition; True when the node carried it out. A ChangeState is not sent twice
        blindly: when its answer does not come within RESEND_S seconds, the node's state says whether it was
        carried out (the answer lost), is still under way (configure loads every variant), or was never
        received (then it is sent again)."""
        request = ChangeState.Request(transition=Transition(id=transition_id))
        deadline = time.time() + timeout
        while True:
            try:
                return self.call(ChangeState, f"/{node}/change_state", request, timeout=RESEND_S,
                                 resend=False).success
            except UserError:
                if time.time() > deadline:
                    raise
            state = self.state(node)
            while state.endswith("ing") and time.time() < deadline:  # configuring, activating, ...
                time.sleep(0.1)
                state = self.state(node)
            if state == TRANSITION_GOALS.get(transition_id):
                return True

    def state(self, node: str = NODE_NAME) -> str:
        return self.call(GetState, f"/{node}/get_state", GetState.Request()).current_state.label

    def configure_and_activate(self, node: str = NODE_NAME) -> None:
        for t in (Transition.TRANSITION_CONFIGURE, Transition.TRANSITION_ACTIVATE):
            if not self.transition(t, node):
                raise UserError(f"lifecycle transition {t} of {node} failed (see the node's log)")

    def set_params(self, node: str = NODE_NAME, **values) -> list:
        params = []
        for name, value in values.items():
            if isinstance(value, bool):
                v = ParameterValue(type=ParameterType.PARAMETER_BOOL, bool_value=value)
            elif isinstance(value, int):
                v = ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=value)
            elif isinstance(value, float):
                v = ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=value)
            else:
                v = ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=str(value))
            params.append(Parameter(name=name, value=v))
        return self.call(SetParameters, f"/{node}/set_parameters",
                         SetParameters.Request(parameters=params)).results

    def get_param(self, name: str, node: str = NODE_NAME):
        v = self.call(GetParameters, f"/{node}/get_parameters", GetParameters.Request(names=[name])).values[0]
        return {ParameterType.PARAMETER_DOUBLE: v.double_value, ParameterType.PARAMETER_INTEGER: v.integer_value,
                ParameterType.PARAMETER_BOOL: v.bool_value}.get(v.type, v.string_value)

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.ctx)
