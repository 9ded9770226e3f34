"""ROS 2 interface packages that PyPI lacks (vision_msgs, tf2_msgs), as sources, and their build (`build.py`)."""
