"""`fusion-prune play`: publish a rosbag2 over DDS at its own pace, for machines without `ros2 bag`.

As `ros2 bag play` does: messages go out as the raw CDR bytes stored in the bag (rclpy publishes serialized
messages as is), so nothing is re-encoded and the header stamps are the original ones; /clock (bag time) only when
asked. QoS as a live vehicle offers it: sensor topics best effort (what drivers publish), /tf reliable, /tf_static
reliable and transient local (latched), so late subscribers still get the calibration.
"""
from __future__ import annotations

import time
from contextlib import closing
from pathlib import Path

import rclpy
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

from ..bag.paths import open_reader
from ..errors import UserError
from .msg_types import import_message_class
from .topics import TF_STATIC_TOPIC, TF_TOPIC

CLOCK_TYPE = "rosgraph_msgs/msg/Clock"


def qos_for(topic: str) -> QoSProfile:
    if topic == TF_STATIC_TOPIC:
        return QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                          durability=DurabilityPolicy.TRANSIENT_LOCAL)
    if topic == TF_TOPIC:
        return QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
    return qos_profile_sensor_data


def play(bag: str | Path, rate: float = 1.0, clock: bool = False, topics: list | None = None,
         node: Node | None = None, wait_for_subscribers_s: float = 0.0, skip=None) -> dict:
    """Publish the bag; returns counts per topic. Uses `node` if given, else its own (and rclpy.init).

    skip(topic, seconds from the bag start) -> bool withholds messages (a sensor dropping out, for tests)."""
    if rate <= 0:
        raise UserError("rate must be positive")
    own = node is None
    if own:
        rclpy.init()
        node = Node("fusion_prune_player")
    counts: dict = {}
    try:
        with closing(open_reader(bag)) as reader:
            conns = [c for c in reader.connections if topics is None or c.topic in topics]
            pubs = {c.id: node.create_publisher(import_message_class(c.msgtype), c.topic, qos_for(c.topic))
                    for c in conns}
            clock_pub = node.create_publisher(import_message_class(CLOCK_TYPE), "/clock", 10) if clock else None
            deadline = time.time() + wait_for_subscribers_s
            while time.time() < deadline and any(p.get_subscription_count() == 0 for p in pubs.values()):
                time.sleep(0.05)
            clock_cls = import_message_class(CLOCK_TYPE)
            time_cls = import_message_class("builtin_interfaces/msg/Time")
            wall0, bag0 = time.perf_counter(), None
            for conn, t_ns, raw in reader.messages(connections=conns):
                bag0 = t_ns if bag0 is None else bag0
                if skip is not None and skip(conn.topic, (t_ns - reader.start_time) * 1e-9):
                    continue
                delay = wall0 + (t_ns - bag0) * 1e-9 / rate - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                if clock_pub is not None:
                    clock_pub.publish(clock_cls(clock=time_cls(sec=t_ns // 10 ** 9, nanosec=t_ns % 10 ** 9)))
                pubs[conn.id].publish(bytes(raw))
                counts[conn.topic] = counts.get(conn.topic, 0) + 1
    finally:
        if own:
            node.destroy_node()
            rclpy.shutdown()
    return counts
