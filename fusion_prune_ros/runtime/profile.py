"""Variants and profiles: what the node may switch between, and what was measured about each choice.

A variant is one exported graph (fused, LiDAR-only or camera-only) of one model (dense, or a pruning method at a
sparsity and granularity), with its accuracy under each sensor condition and its latency per device. A profile is
an ordered list of variants (most preferred first) in YAML under config/profiles/; paths are relative to the
profile file. Loading validates everything up front: an unknown key, a missing file or a profile with no variant
for a modality is a one-line error at configure time, not a crash on the hot path.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..config import from_dict, to_dict
from ..documents import read_document
from ..errors import UserError
from .latency_key import ORT_CPU_2T, LatencyKey

MODALITIES = ("fused", "lidar", "camera")


@dataclass
class Variant:
    name: str
    modality: str  # which inputs the graph takes: fused (LiDAR + cameras), lidar, camera
    onnx: str  # path of the graph, relative to the profile file
    checkpoint: str = ""  # PyTorch checkpoint of the model (torch backend), relative to the profile file
    method: str = "dense"
    sparsity: float = 0.0
    granularity: str = "none"
    params_m: float = 0.0
    gflops: float = 0.0
    metrics: dict = field(default_factory=dict)  # condition -> {"mAP": .., "NDS": ..}
    latency_ms: dict = field(default_factory=dict)  # str(LatencyKey) -> median ms
    sha256: str = ""


@dataclass
class Profile:
    name: str
    variants: list
    detector: str = "detector.yaml"  # the model's input configuration (grid, images), relative to the profile
    latency_key: str = str(ORT_CPU_2T)  # which measured latency seeds the policy before a variant has run
    root: str = ""  # folder the variant paths are relative to (set when loading)

    def variant(self, name: str) -> Variant:
        for v in self.variants:
            if v.name == name:
                return v
        raise UserError(f"profile {self.name} has no variant {name!r} (has: {', '.join(self.names())})")

    def names(self) -> list:
        return [v.name for v in self.variants]

    def path(self, relative: str) -> Path:
        return Path(self.root) / relative

    def modalities(self) -> set:
        return {v.modality for v in self.variants}


def load_profile(path: str | Path, check_files: bool = True) -> Profile:
    path = Path(path)
    data = read_document(path, yaml.safe_load, yaml.YAMLError, f"profile not found: {path}",
                         f"profile {path} is not valid YAML")
    if not isinstance(data, dict) or not isinstance(data.get("variants"), list):
        raise UserError(f"profile {path}: expected a mapping with a 'variants' list")
    variants = [from_dict(Variant, v, f"{path.name}: variants[{i}]") for i, v in enumerate(data["variants"])]
    profile = from_dict(Profile, {**data, "variants": variants, "root": str(path.parent.resolve())}, path.name)
    if not variants:
        raise UserError(f"profile {path} lists no variants")
    names = profile.names()
    if len(set(names)) != len(names):
        raise UserError(f"profile {path}: duplicate variant names")
    if check_files and not profile.path(profile.detector).is_file():
        raise UserError(f"profile {path}: detector config not found: {profile.path(profile.detector)}")
    for key in [profile.latency_key, *(k for v in variants for k in v.latency_ms)]:
        try:
            LatencyKey.parse(key)
        except UserError as e:
            raise UserError(f"profile {path}: {e}") from None
    for v in variants:
        if v.modality not in MODALITIES:
            raise UserError(f"profile {path}: variant {v.name} has unknown modality {v.modality!r}")
        if check_files and not profile.path(v.onnx).is_file():
            raise UserError(f"profile {path}: variant {v.name}: file not found: {profile.path(v.onnx)}")
    return profile


def save_profile(profile: Profile, path: str | Path) -> None:
    data = to_dict(profile)
    data.pop("root")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(yaml.safe_dump(data, sort_keys=False))
