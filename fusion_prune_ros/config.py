"""Typed dataclass configs <-> plain dicts / YAML.

Every stage takes a dataclass rather than a dict, so a typo in a YAML key is an error (naming the key) instead of
a silently ignored setting, and defaults live in one place.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from .errors import UserError

T = TypeVar("T")


def to_dict(obj) -> dict:
    """Dataclass -> dict of plain values (tuples become lists), ready for YAML / JSON."""
    def plain(v):
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v
    return plain(obj)


def from_dict(cls: type[T], data: dict[str, Any], where: str = "") -> T:
    """Build dataclass `cls` from a dict, recursing into nested dataclasses; unknown keys are errors."""
    if not isinstance(data, dict):
        raise UserError(f"{where or cls.__name__}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise UserError(f"{where or cls.__name__}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(names))})")
    kwargs = {}
    for key, value in data.items():
        kwargs[key] = _convert(hints[key], value, f"{where}.{key}" if where else key)
    return cls(**kwargs)


def _convert(hint, value, where: str):
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, where)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return None if value is None else _convert(args[0], value, where)
    if origin is tuple:
        args = typing.get_args(hint)
        item = args[0] if args else Any
        return tuple(_convert(item, v, where) for v in value)
    if origin is list:
        (item,) = typing.get_args(hint) or (Any,)
        return [_convert(item, v, where) for v in value]
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float, str, bool) and not isinstance(value, hint):
        raise UserError(f"{where}: expected {hint.__name__}, got {value!r}")
    return value


def load_yaml(cls: type[T], path: str | Path) -> T:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file not found: {path}")
    with open(path) as f:
        return from_dict(cls, yaml.safe_load(f) or {}, path.name)


def save_yaml(obj, path: str | Path) -> None:
    with open(path, "w") as f:
        yaml.safe_dump(to_dict(obj), f, sort_keys=False)


# ---- detector configuration -------------------------------------------------------------------------------------


@dataclass
class GridConfig:
    """The BEV grids, all centred on the LiDAR and square (x, y in [-bev_range, bev_range]).

    The LiDAR pseudo-image has `lidar_cells` cells a side; the fused BEV (camera lift, fuser, BEV backbone) is 4x
    coarser and the detection head 2x coarser than the LiDAR input (pixel shuffle from the fused grid).
    """

    bev_range: float = 51.2
    lidar_cells: int = 256
    z_min: float = -2.2  # LiDAR frame (the sensor is 1.84 m above the ground)
    z_max: float = 1.8
    height_slices: int = 8
    n_sweeps: int = 6
    lift_heights: tuple[float, ...] = (-1.5, -0.8, -0.1, 0.6)

    @property
    def lidar_cell(self) -> float:
        return 2 * self.bev_range / self.lidar_cells

    @property
    def fused_cells(self) -> int:
        return self.lidar_cells // 4

    @property
    def head_cells(self) -> int:
        return self.lidar_cells // 2

    @property
    def head_cell(self) -> float:
        return 2 * self.bev_range / self.head_cells


@dataclass
class CameraInputConfig:
    """Network image size: resize to `width` (keeping aspect), then crop `height` rows starting at
    `crop_top_fraction` of the resized height (drops sky and bonnet, as BEVFusion's crop does)."""

    width: int = 256
    height: int = 96
    crop_top_fraction: float = 0.28
    feature_stride: int = 8


@dataclass
class ModelConfig:
    """Channel widths of every stage; pruning changes them per layer, so a pruned model keeps its own copy."""

    lidar_channels: tuple[int, ...] = (24, 48)  # stride 2, stride 4 (the fused grid)
    camera_channels: tuple[int, ...] = (16, 32, 64, 128)  # stem (s2), s4, s8, s16
    camera_out: int = 48  # image features at stride 8 after the neck
    camera_bev: int = 48  # camera BEV channels after the lift
    lidar_bev: int = 48  # LiDAR BEV channels entering the fuser
    fused: int = 48
    bev_channels: tuple[int, ...] = (48, 96, 192)  # fused grid, 1/2, 1/4
    head_channels: int = 48
    # The first conv of each branch reads the raw input: with this, its output channels are prunable (its input
    # stays), so the channel-pruning floor no longer keeps it whole (prune/units.py).
    prunable_input_convs: bool = False
    # The exported graphs end with the head's sub-cell maps and the decoder applies the pixel shuffle, a pure
    # permutation (model/head.py): two DepthToSpace nodes and a layout reorder less in every graph.
    subcells_to_decoder: bool = False


@dataclass
class TrainConfig:
    steps: int = 20000
    batch_size: int = 4
    lr: float = 2e-3
    weight_decay: float = 1e-2
    pct_start: float = 0.3
    drop_lidar: float = 0.15
    drop_camera: float = 0.15
    drop_single_camera: float = 0.1
    flip: bool = True
    seed: int = 0
    checkpoint_minutes: float = 5.0
    num_workers: int = 1
    log_every: int = 50
    # Staged training (training/stages.py): lidar, camera, or fused; the fused stage may start from the model.pt
    # of a lidar and a camera stage run.
    stage: str = "fused"
    init_lidar: str = ""
    init_camera: str = ""


@dataclass
class DataConfig:
    dataroot: str = "data/trainval"
    version: str = "v1.0-trainval"
    train_split: str = "train"
    val_split: str = "val"
    cache_dir: str = ""  # default: <dataroot>/cache/<config digest>


@dataclass
class DetectorConfig:
    """Everything that defines a detector and its training: one YAML file (config/detector/*.yaml)."""

    name: str = "base"
    grid: GridConfig = dataclasses.field(default_factory=GridConfig)
    camera: CameraInputConfig = dataclasses.field(default_factory=CameraInputConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
