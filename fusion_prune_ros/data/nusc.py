"""Opening a nuScenes data set (real or generated) with one-line errors instead of devkit assertions.

The devkit reports a missing table or version with an AssertionError deep in its constructor, and a malformed
table with a JSON traceback; a user of `fusion-prune` gets one line naming the problem instead.
"""
from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING


from ..errors import UserError
from .schema import TABLE_NAMES

if TYPE_CHECKING:
    from nuscenes.nuscenes import NuScenes

SPLITS_OF_VERSION = {
    "v1.0-mini": ("mini_train", "mini_val"),
    "v1.0-trainval": ("train", "val"),
    "v1.0-test": ("test",),
}


# How to make each version's data set where none is: the generated sets the shipped models were trained on.
GENERATE = {
    "v1.0-trainval": ("fusion-prune synth --out {root} --version v1.0-trainval --train-scenes 150 --val-scenes 25 "
                      "--no-camera-sweeps", "about 26 minutes on 2 cores"),
    "v1.0-mini": ("fusion-prune synth --out {root} --version v1.0-mini", "about 4 minutes on 2 cores"),
}


def require_dataset(dataroot: str | Path, version: str) -> None:
    """Raise a one-line UserError naming the command that generates the data set when `dataroot` holds no
    `version` folder: a fresh clone has none, and every command that reads data starts here or in `open_nuscenes`."""
    root = Path(dataroot)
    if (root / version).is_dir():
        return
    where = f"no {version} data set at {root}" + ("" if root.is_dir() else " (no such folder)")
    if version in GENERATE:
        command, cost = GENERATE[version]
        how = f"generate it first with `{command.format(root=root)}` ({cost})"
    else:
        how = "download it from nuscenes.org"
    raise UserError(f"{where}: {how}, or give --dataroot (and --version) of a nuScenes copy")


def check_split(version: str, split: str) -> None:
    if version not in SPLITS_OF_VERSION:
        raise UserError(f"unknown nuScenes version {version!r}: expected one of {', '.join(SPLITS_OF_VERSION)}")
    if split not in SPLITS_OF_VERSION[version]:
        raise UserError(f"split {split!r} does not belong to {version} (its splits: "
                        f"{', '.join(SPLITS_OF_VERSION[version])})")


def open_nuscenes(dataroot: str | Path, version: str, verbose: bool = False) -> NuScenes:
    """Load the tables of `version` under `dataroot` after checking that they exist and parse."""
    root = Path(dataroot)
    if version not in SPLITS_OF_VERSION:
        raise UserError(f"unknown nuScenes version {version!r}: expected one of {', '.join(SPLITS_OF_VERSION)}")
    require_dataset(root, version)
    table_root = root / version
    for name in TABLE_NAMES:
        path = table_root / f"{name}.json"
        if not path.is_file():
            raise UserError(f"missing table {version}/{name}.json under {root}")
        try:
            rows = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise UserError(f"malformed table {version}/{name}.json: {e}") from None
        if not isinstance(rows, list) or any(not isinstance(r, dict) or "token" not in r for r in rows):
            raise UserError(f"malformed table {version}/{name}.json: expected a list of records with a token")
    sink = contextlib.nullcontext() if verbose else contextlib.redirect_stdout(io.StringIO())
    try:
        with sink:
            from nuscenes.nuscenes import NuScenes  # the devkit only where a data set is opened: not by the node

            return NuScenes(version=version, dataroot=str(root), verbose=verbose)
    except (KeyError, AssertionError, TypeError, IndexError) as e:
        raise UserError(f"inconsistent tables in {table_root}: {type(e).__name__} {e}") from None


def split_scene_names(split: str) -> set:
    from nuscenes.utils import splits as nusc_splits

    return set(nusc_splits.create_splits_scenes()[split])


def split_sample_tokens(nusc: NuScenes, split: str) -> list:
    """Tokens of the samples of a split, in scene order then time order."""
    check_split(nusc.version, split)
    names = split_scene_names(split)
    tokens = []
    for scene in nusc.scene:
        if scene["name"] not in names:
            continue
        token = scene["first_sample_token"]
        while token:
            tokens.append(token)
            token = nusc.get("sample", token)["next"]
    return tokens


def sensor_file(nusc: NuScenes, sample_data_token: str) -> Path:
    """Path of a sample_data file, with a one-line error when it is missing."""
    rec = nusc.get("sample_data", sample_data_token)
    path = Path(nusc.dataroot) / rec["filename"]
    if not path.is_file():
        raise UserError(f"missing sensor file {rec['filename']} under {nusc.dataroot}")
    return path
