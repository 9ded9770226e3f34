"""fusion_prune_ros: camera-LiDAR BEV fusion detection, multimodal pruning, and a ROS 2 node that switches variants."""

__version__ = "0.1.0"
