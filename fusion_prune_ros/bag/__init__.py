"""ROS 2 bags from nuScenes scenes, written and read without a ROS installation (through `rosbags`)."""
