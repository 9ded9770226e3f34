"""The ten nuScenes detection classes and the category / attribute names behind them.

The order of DETECTION_CLASSES is the order of the network's heatmap channels (the CenterPoint / mmdet3d
order), so it must never change once a model is trained.
"""
from __future__ import annotations

DETECTION_CLASSES = (
    "car", "truck", "construction_vehicle", "bus", "trailer",
    "barrier", "motorcycle", "bicycle", "pedestrian", "traffic_cone",
)

# nuScenes category -> detection class (the devkit's `category_to_detection_name`, restated so the generator
# can pick categories without importing the evaluation code).
CATEGORY_TO_CLASS = {
    "vehicle.car": "car",
    "vehicle.truck": "truck",
    "vehicle.construction": "construction_vehicle",
    "vehicle.bus.rigid": "bus",
    "vehicle.bus.bendy": "bus",
    "vehicle.trailer": "trailer",
    "movable_object.barrier": "barrier",
    "vehicle.motorcycle": "motorcycle",
    "vehicle.bicycle": "bicycle",
    "human.pedestrian.adult": "pedestrian",
    "human.pedestrian.child": "pedestrian",
    "human.pedestrian.construction_worker": "pedestrian",
    "human.pedestrian.police_officer": "pedestrian",
    "movable_object.trafficcone": "traffic_cone",
}

# The eight nuScenes attributes, with the descriptions of the official attribute table.
ATTRIBUTES = {
    "vehicle.moving": "Vehicle is moving.",
    "vehicle.stopped": "Vehicle, with a driver/rider in/on it, is currently stationary but has an intent to move.",
    "vehicle.parked": "Vehicle is stationary (usually for longer duration) with no immediate intent to move.",
    "cycle.with_rider": "There is a rider on the bicycle or motorcycle.",
    "cycle.without_rider": "There is NO rider on the bicycle or motorcycle.",
    "pedestrian.sitting_lying_down": "The human is sitting or lying down.",
    "pedestrian.standing": "The human is standing.",
    "pedestrian.moving": "The human is moving.",
}

# Attributes a box of each class may carry (empty: the class has none, as in the devkit).
CLASS_ATTRIBUTES = {
    "car": ("vehicle.moving", "vehicle.parked", "vehicle.stopped"),
    "truck": ("vehicle.moving", "vehicle.parked", "vehicle.stopped"),
    "construction_vehicle": ("vehicle.moving", "vehicle.parked", "vehicle.stopped"),
    "bus": ("vehicle.moving", "vehicle.parked", "vehicle.stopped"),
    "trailer": ("vehicle.moving", "vehicle.parked", "vehicle.stopped"),
    "barrier": (),
    "motorcycle": ("cycle.with_rider", "cycle.without_rider"),
    "bicycle": ("cycle.with_rider", "cycle.without_rider"),
    "pedestrian": ("pedestrian.moving", "pedestrian.standing", "pedestrian.sitting_lying_down"),
    "traffic_cone": (),
}

VISIBILITY_LEVELS = (
    ("v0-40", "visibility of whole object is between 0 and 40%"),
    ("v40-60", "visibility of whole object is between 40 and 60%"),
    ("v60-80", "visibility of whole object is between 60 and 80%"),
    ("v80-100", "visibility of whole object is between 80 and 100%"),
)

# RGB per detection class for markers: annotation markers in bags and detection markers from the node agree.
CLASS_COLORS = {
    "car": (1.0, 0.6, 0.0), "truck": (1.0, 0.27, 0.0), "construction_vehicle": (0.8, 0.52, 0.25),
    "bus": (1.0, 0.84, 0.0), "trailer": (0.55, 0.27, 0.07), "barrier": (0.44, 0.5, 0.56),
    "motorcycle": (1.0, 0.0, 0.5), "bicycle": (0.86, 0.08, 0.24), "pedestrian": (0.0, 0.3, 1.0),
    "traffic_cone": (0.0, 0.8, 0.8),
}

CAMERAS = ("CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_FRONT_LEFT", "CAM_BACK", "CAM_BACK_LEFT", "CAM_BACK_RIGHT")
LIDAR = "LIDAR_TOP"
