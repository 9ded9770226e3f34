"""ROS-free runtime: backends, variant pool, sensor health, switching policy, and the frame pipeline."""
