"""The ROS edge of the feeder: sensor messages by topic -> `Feeder.arrive`, for the node and the bag replay alike.

Each message's header stamp is read at once (the sensor health needs it on arrival); its conversion to numpy is
handed over as a function the feeder's worker runs later, so the thread that takes messages off DDS never decodes
a JPEG or walks a cloud. Messages are read by field name, so rclpy messages (the node) and rosbags messages (the
replay) take the same path; `sensor_msgs/CompressedImage` and `sensor_msgs/Image` are told apart by their fields.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..runtime import feeder as fd
from .camera import camera_info_to_intrinsics, compressed_to_rgb, image_to_rgb
from .point_cloud import cloud_to_points
from .stamps import stamp_to_ns
from .transforms import tf_message_to_matrices, transform_to_matrix
from .topics import LIDAR_TOPIC, TF_STATIC_TOPIC, TF_TOPIC, camera_info_topic, image_topic


@dataclass(frozen=True)
class InputTopics:
    """Which topic carries what: the LiDAR, and per camera its images and its CameraInfo."""

    lidar: str = LIDAR_TOPIC
    images: dict = field(default_factory=dict)  # topic -> camera name
    camera_infos: dict = field(default_factory=dict)  # topic -> camera name
    tf: str = TF_TOPIC
    tf_static: str = TF_STATIC_TOPIC

    @classmethod
    def for_cameras(cls, cameras: tuple, lidar: str = LIDAR_TOPIC, image_topics: tuple = (),
                    info_topics: tuple = ()) -> "InputTopics":
        """The package's default topic layout, or the given topics (one per camera, in camera order)."""
        images = image_topics or tuple(image_topic(c) for c in cameras)
        infos = info_topics or tuple(camera_info_topic(c) for c in cameras)
        return cls(lidar, dict(zip(images, cameras)), dict(zip(infos, cameras)))


class InputRouter:
    """Dispatches messages by topic to the feeder with their stamp and their deferred conversion."""

    def __init__(self, feeder: fd.Feeder, topics: InputTopics, lidar: str, max_points: int):
        self.feeder = feeder
        self.topics = topics
        self.lidar = lidar
        self.max_points = max_points

    def route(self, topic: str, msg: Any) -> bool:
        """Hand `msg` of `topic` to the feeder; False for a topic that is not an input of the node."""
        t = self.topics
        if topic == t.lidar:
            self.feeder.arrive(fd.CLOUD, self.lidar, stamp_to_ns(msg.header.stamp),
                               lambda: cloud_to_points(msg, max_points=self.max_points), str(msg.header.frame_id))
        elif topic in t.images:
            decode = compressed_to_rgb if hasattr(msg, "format") else image_to_rgb
            self.feeder.arrive(fd.IMAGE, t.images[topic], stamp_to_ns(msg.header.stamp), lambda: decode(msg))
        elif topic in t.camera_infos:
            self.feeder.arrive(fd.CAMERA_INFO, t.camera_infos[topic], stamp_to_ns(msg.header.stamp),
                               lambda: camera_info_to_intrinsics(msg))
        elif topic == t.tf:
            self.feeder.arrive(fd.TF, "", 0, lambda: _poses(msg))
        elif topic == t.tf_static:
            self.feeder.arrive(fd.TF_STATIC, "", 0, lambda: tf_message_to_matrices(msg))
        else:
            return False
        return True


def _poses(msg: Any) -> list:
    """tf2_msgs/TFMessage -> [(parent, child, stamp_ns, 4x4 parent <- child)]."""
    return [(str(t.header.frame_id), str(t.child_frame_id), stamp_to_ns(t.header.stamp),
             transform_to_matrix(t.transform)) for t in msg.transforms]
