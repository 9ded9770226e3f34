"""builtin_interfaces Time / Duration <-> integer nanoseconds, for rclpy and `rosbags` messages alike."""
from __future__ import annotations

from typing import Any


def stamp_to_ns(stamp: Any) -> int:
    """builtin_interfaces/Time (or Duration) -> integer nanoseconds (exact: no float rounding)."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def ns_to_stamp(ns: int, time_class: type) -> Any:
    """Integer nanoseconds -> a Time / Duration of `time_class`; nanosec is always in [0, 1e9), as ROS requires,
    also for negative times."""
    sec, nanosec = divmod(int(ns), 1_000_000_000)
    return time_class(sec=sec, nanosec=nanosec)
