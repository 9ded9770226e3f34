"""Opening rosbag2 bags by any name.

A rosbag2 bag is a directory (metadata.yaml plus its storage files), whatever it is called; `ros2 bag play` also
takes one of its storage files. Both are accepted here. (rosbags' `AnyReader` takes a path ending in `.bag` for a
ROS 1 bag, which is why the package never names its own bag directories so.)
"""
from __future__ import annotations

from pathlib import Path

from rosbags.rosbag2 import Reader

from ..errors import UserError


def bag_directory(path: str | Path) -> Path:
    """The bag directory of `path`: the directory itself, or the directory of a file inside one."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"bag not found: {path}")
    directory = path if path.is_dir() else path.parent
    if not (directory / "metadata.yaml").is_file():
        raise UserError(f"{path} is not a rosbag2 bag (no metadata.yaml in {directory})")
    return directory


def open_reader(path: str | Path) -> Reader:
    """An opened rosbags Reader of the bag at `path` (close it when done, or use it as a context manager)."""
    directory = bag_directory(path)
    reader = Reader(directory)
    try:
        reader.open()
    except Exception as e:  # rosbags raises its own error types for unreadable bags
        raise UserError(f"cannot read bag {directory}: {e}") from None
    return reader
