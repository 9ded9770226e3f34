"""`fusion-prune record`: write topics from DDS into a rosbag2 (MCAP) with `rosbags`, for machines without
`ros2 bag record`. Subscriptions are raw (the CDR bytes go into the bag untouched), typed through the package's
typestore, which knows the standard messages and the vision_msgs the node publishes."""
from __future__ import annotations

import threading
from pathlib import Path

import rclpy
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rosbags.rosbag2 import StoragePlugin, Writer

from ..bag import typestore as ts
from ..errors import UserError
from .msg_types import import_message_class


class Recorder:
    """Subscribes to {topic: type name} on `node` and writes every message to `path` until `close()`."""

    def __init__(self, node: Node, path: str | Path, topics: dict, latched: tuple = ()):
        path = Path(path)
        if path.exists():
            raise UserError(f"output bag already exists: {path}")
        self.writer = Writer(path, version=9, storage_plugin=StoragePlugin.MCAP)
        self.writer.open()
        self.lock = threading.Lock()
        self.counts: dict = {t: 0 for t in topics}
        self.node = node
        self.subs = []
        store = ts.typestore()
        for topic, typename in topics.items():
            conn = self.writer.add_connection(topic, typename, typestore=store)
            qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL if topic in latched
                             else DurabilityPolicy.VOLATILE)
            self.subs.append(node.create_subscription(import_message_class(typename), topic,
                                                      lambda raw, c=conn, t=topic: self._write(c, t, raw), qos,
                                                      raw=True))

    def _write(self, conn, topic: str, raw: bytes) -> None:
        with self.lock:
            if self.writer is None:
                return
            self.writer.write(conn, self.node.get_clock().now().nanoseconds, raw)
            self.counts[topic] += 1

    def close(self) -> dict:
        with self.lock:
            for sub in self.subs:
                self.node.destroy_subscription(sub)
            if self.writer is not None:
                self.writer.close()
                self.writer = None
        return self.counts


def record(path: str | Path, topics: dict, duration_s: float, latched: tuple = ()) -> dict:
    """Record for `duration_s` seconds of wall time with a node of its own."""
    rclpy.init()
    node = Node("fusion_prune_recorder")
    rec = Recorder(node, path, topics, latched)
    try:
        end = node.get_clock().now().nanoseconds + duration_s * 1e9
        while rclpy.ok() and node.get_clock().now().nanoseconds < end:
            rclpy.spin_once(node, timeout_sec=0.1)
    except KeyboardInterrupt:
        pass
    finally:
        counts = rec.close()
        node.destroy_node()
        rclpy.try_shutdown()
    return counts
