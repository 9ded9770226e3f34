"""The uint8[] `data` field of a sensor message as a numpy array, whichever library built the message."""
from __future__ import annotations

from typing import Any

import numpy as np


def uint8_view(data: Any) -> np.ndarray:
    """A uint8 view of a message's byte array: rosbags gives a numpy array, rclpy an array.array('B'); both
    expose the buffer protocol, so nothing is copied."""
    return np.frombuffer(data, np.uint8)
