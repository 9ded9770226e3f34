"""Training / evaluation data: a precomputed cache of the network inputs, and the torch Dataset over it.

Decoding six JPEGs, reading six LiDAR sweeps and binning them costs about as much CPU as a training step on the
2-core machine, so every frame of a split is preprocessed once (`build_cache`) into memory-mapped arrays: the
pillar pseudo-image (float16), the resized and cropped images (uint8), the calibration and the ground truth. The
Dataset then only flips, jitters, drops modalities, computes the camera sampling grid and the targets.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..atomic import built_in_place
from ..config import DetectorConfig, to_dict
from ..errors import UserError
from ..model.graph_io import input_shapes
from ..model.pillars import LIDAR_FEATURES, lidar_bev
from ..model.preprocess import camera_grid, camera_images, normalise_images
from ..model.targets import build_targets, flip_boxes
from .frame import load_frame
from .nusc import open_nuscenes, require_dataset, split_sample_tokens

CACHE_FORMAT = 1


def cache_key(cfg: DetectorConfig, split: str) -> str:
    """Digest of everything the cached tensors depend on: the data set, the split, the grid and image settings."""
    root = Path(cfg.data.dataroot)
    synth = root / "synth.json"
    if not synth.is_file():
        require_dataset(root, cfg.data.version)
        if not (root / cfg.data.version / "sample.json").is_file():
            raise UserError(f"missing table {cfg.data.version}/sample.json under {root}")
    stamp = synth.read_text() if synth.is_file() else str((root / cfg.data.version / "sample.json").stat().st_mtime)
    blob = json.dumps([CACHE_FORMAT, str(root.resolve()), cfg.data.version, split, to_dict(cfg.grid),
                       to_dict(cfg.camera), stamp], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def cache_dir(cfg: DetectorConfig, split: str) -> Path:
    base = Path(cfg.data.cache_dir) if cfg.data.cache_dir else Path(cfg.data.dataroot) / "cache"
    return base / f"{split}-{cache_key(cfg, split)}"


@dataclass
class FrameCache:
    """Memory-mapped preprocessed frames of one split."""

    root: Path
    tokens: list
    lidar: np.ndarray  # (N, 14, L, L) float16
    images: np.ndarray  # (N, 6, h, w, 3) uint8
    intrinsics: np.ndarray  # (N, 6, 3, 3)
    cam_from_lidar: np.ndarray  # (N, 6, 4, 4)
    camera_present: np.ndarray  # (N, 6) bool
    src_size: tuple  # (width, height) of the source images
    boxes: list  # per frame (M, 9) float32, LiDAR frame
    labels: list  # per frame (M,) int64

    def __len__(self) -> int:
        return len(self.tokens)

    @staticmethod
    def open(root: Path) -> "FrameCache":
        meta = json.loads((root / "meta.json").read_text())
        n = len(meta["tokens"])
        gt = np.load(root / "gt.npz")
        splits = np.cumsum(gt["counts"])[:-1]
        return FrameCache(
            root, meta["tokens"],
            np.lib.format.open_memmap(root / "lidar.npy", mode="r"),
            np.lib.format.open_memmap(root / "images.npy", mode="r"),
            gt["intrinsics"], gt["cam_from_lidar"], gt["camera_present"], tuple(meta["src_size"]),
            np.split(gt["boxes"], splits) if n else [], np.split(gt["labels"], splits) if n else [])


def build_cache(cfg: DetectorConfig, split: str, quiet: bool = False) -> FrameCache:
    """The split's cache, built first if missing (written to a .partial folder, renamed when complete)."""
    root = cache_dir(cfg, split)
    if (root / "meta.json").is_file():
        return FrameCache.open(root)
    nusc = open_nuscenes(cfg.data.dataroot, cfg.data.version)
    tokens = split_sample_tokens(nusc, split)
    if not tokens:
        raise UserError(f"split {split} has no samples in {cfg.data.dataroot}")
    from ..evaluation.metrics import ground_truth  # evaluate imports the devkit's metric code; only needed here

    with built_in_place(root) as partial:
        first = load_frame(nusc, tokens[0], cfg.grid.n_sweeps)
        src_size = (first.images.shape[2], first.images.shape[1])
        n, l = len(tokens), cfg.grid.lidar_cells
        lidar = np.lib.format.open_memmap(partial / "lidar.npy", "w+", np.float16, (n, LIDAR_FEATURES, l, l))
        images = np.lib.format.open_memmap(partial / "images.npy", "w+", np.uint8,
                                           (n, len(first.camera_names), cfg.camera.height, cfg.camera.width, 3))
        intr, extr, present, boxes, labels = [], [], [], [], []
        start = time.time()
        for i, token in enumerate(tqdm(tokens, desc=f"cache {split}", disable=quiet, mininterval=2.0)):
            frame = first if i == 0 else load_frame(nusc, token, cfg.grid.n_sweeps)
            lidar[i] = lidar_bev(frame.points, cfg.grid)
            images[i] = camera_images(frame.images, cfg.camera)
            intr.append(frame.intrinsics)
            extr.append(frame.cam_from_lidar)
            present.append(frame.camera_present)
            gt = ground_truth(nusc, token, min_points=1)  # the boxes the official metric evaluates
            boxes.append(gt.boxes)
            labels.append(gt.labels)
        lidar.flush()
        images.flush()
        np.savez(partial / "gt.npz", intrinsics=np.stack(intr), cam_from_lidar=np.stack(extr),
                 camera_present=np.stack(present), boxes=np.concatenate(boxes), labels=np.concatenate(labels),
                 counts=np.array([len(b) for b in boxes]))
        (partial / "meta.json").write_text(json.dumps({
            "tokens": tokens, "src_size": src_size, "split": split, "dataroot": cfg.data.dataroot,
            "seconds": round(time.time() - start, 1)}))
        del lidar, images
        if root.exists():  # an earlier, incomplete cache without meta.json
            shutil.rmtree(root)
    return FrameCache.open(root)


@dataclass
class Augment:
    """Per-sample training augmentation and modality dropout (all off for evaluation)."""

    flip: bool = False
    drop_lidar: float = 0.0
    drop_camera: float = 0.0
    drop_single_camera: float = 0.0
    photometric: bool = False


class DetectionDataset(torch.utils.data.Dataset):
    """Cached frames -> network inputs and CenterPoint targets, with geometry-consistent augmentation.

    A BEV flip mirrors the pseudo-image, the boxes and (through `camera_grid`) where each BEV cell samples the
    images, so camera and LiDAR stay aligned. Modality dropout zeroes a branch and sets its presence flag, the
    first-class 'sensor missing' state the network must handle; single cameras drop out of the sampling grid.
    `presence` forces a modality state for evaluation ((1, 1) fused, (1, 0) camera lost, (0, 1) LiDAR lost) and
    for a single-modality training stage; a modality it sets absent is not read or augmented at all (its inputs
    are zeros), which a LiDAR-only stage would otherwise spend on six images per frame.
    """

    def __init__(self, cache: FrameCache, cfg: DetectorConfig, augment: Augment = Augment(),
                 presence: tuple = (1.0, 1.0), seed: int = 0, targets: bool = True):
        self.cache, self.cfg, self.augment = cache, cfg, augment
        self.presence = presence
        self.seed = seed
        self.targets = targets

    def __len__(self) -> int:
        return len(self.cache)

    def __getitem__(self, key) -> dict:
        """key: a frame index, or (index, epoch) from the training sampler (augmentation differs per epoch)."""
        i, epoch = key if isinstance(key, tuple) else (key, 0)
        c, cfg, aug = self.cache, self.cfg, self.augment
        rng = np.random.default_rng([self.seed, epoch, i])
        flip_x = aug.flip and rng.random() < 0.5
        flip_y = aug.flip and rng.random() < 0.5
        presence = np.array(self.presence, np.float32)
        u = rng.random()
        if u < aug.drop_lidar:
            presence[0] = 0.0
        elif u < aug.drop_lidar + aug.drop_camera:
            presence[1] = 0.0
        cams = c.camera_present[i].copy()
        if aug.drop_single_camera:
            cams &= rng.random(len(cams)) >= aug.drop_single_camera
        item = {"index": i, "presence": presence}
        item["lidar_bev"] = self._lidar(i, flip_x, flip_y) * presence[0] if self.presence[0] else \
            np.zeros((LIDAR_FEATURES, cfg.grid.lidar_cells, cfg.grid.lidar_cells), np.float32)
        if self.presence[1]:
            item["images"] = self._images(i, rng) * presence[1]
            item["cam_grid"] = camera_grid(c.intrinsics[i], c.cam_from_lidar[i], cams, c.src_size, cfg.grid,
                                           cfg.camera, flip_x, flip_y)
        else:
            shapes = input_shapes(cfg, batch=1, n_cameras=c.images.shape[1])
            item["images"] = np.zeros(shapes["images"], np.float32)
            item["cam_grid"] = np.zeros(shapes["cam_grid"][1:], np.float32)
        if self.targets:
            boxes = flip_boxes(c.boxes[i], flip_x, flip_y)
            item["heatmap"], item["regression"], item["reg_mask"], item["vel_mask"] = build_targets(
                boxes, c.labels[i], cfg.grid)
        return item

    def _lidar(self, i: int, flip_x: bool, flip_y: bool) -> np.ndarray:
        bev = np.asarray(self.cache.lidar[i], np.float32)
        if flip_x:
            bev = bev[:, :, ::-1]
        if flip_y:
            bev = bev[:, ::-1, :]
        return np.ascontiguousarray(bev)

    def _images(self, i: int, rng: np.random.Generator) -> np.ndarray:
        images = np.asarray(self.cache.images[i])
        if self.augment.photometric:
            gain = rng.uniform(0.7, 1.3)
            bias = rng.uniform(-20, 20)
            images = np.clip(images.astype(np.float32) * gain + bias, 0, 255)
        return normalise_images(images)


def collate(items: list) -> dict:
    """Stack a batch; images become (B * 6, 3, h, w) as the camera branch expects."""
    batch = {k: torch.from_numpy(np.stack([it[k] for it in items])) for k in items[0] if k != "index"}
    batch["images"] = batch["images"].flatten(0, 1)
    batch["index"] = torch.tensor([it["index"] for it in items])
    return batch
