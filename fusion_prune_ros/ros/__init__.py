"""The ROS 2 side of the package: message conversion and the detector node."""
