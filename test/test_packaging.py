"""setup.py installs what the ament index and launch_ros look for, and what the package reads from its share folder.

`ros2 launch fusion_prune_ros ...` / launch_ros.actions.Node(package=..., executable=...) find the package through
AMENT_PREFIX_PATH: the prefix needs share/ament_index/resource_index/packages/fusion_prune_ros,
share/fusion_prune_ros/package.xml and an executable lib/fusion_prune_ros/fusion_prune_node. A wheel (pip install .)
puts console scripts in bin/ whatever setup.cfg says, so the last one comes from data_files. Checked by running
setup.py with setuptools.setup replaced, so no build is needed.
"""
from __future__ import annotations

import os
import runpy
from pathlib import Path

import setuptools

from fusion_prune_ros.runtime.graph_files import graph_files

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "fusion_prune_ros"


def _data_files(monkeypatch) -> dict:
    captured: dict = {}
    monkeypatch.setattr(setuptools, "setup", lambda **kwargs: captured.update(kwargs))
    monkeypatch.chdir(REPO)  # data_files are relative to setup.py, as pip and colcon run it
    runpy.run_path(str(REPO / "setup.py"), run_name="__main__")
    return {f"{dest}/{Path(src).name}": REPO / src for dest, sources in captured["data_files"] for src in sources}


def test_setup_py_installs_the_ament_index_entries_and_the_node_executable(monkeypatch):
    files = _data_files(monkeypatch)
    for path in (f"share/ament_index/resource_index/packages/{PACKAGE}", f"share/{PACKAGE}/package.xml",
                 f"share/{PACKAGE}/launch/fusion_prune.launch.py", f"share/{PACKAGE}/launch/replay.launch.py",
                 f"share/{PACKAGE}/config/fusion_prune.yaml", f"share/{PACKAGE}/config/fastdds.xml",
                 f"lib/{PACKAGE}/fusion_prune_node"):
        assert path in files, f"setup.py's data_files do not install {path}"
        assert files[path].is_file(), files[path]
    node = files[f"lib/{PACKAGE}/fusion_prune_node"]
    assert os.access(node, os.X_OK), f"{node} is not executable (git update-index --chmod=+x {node.name})"


def test_setup_py_installs_the_config_the_package_reads_from_its_share_folder(monkeypatch):
    files = _data_files(monkeypatch)
    for folder in ("config/detector", "config/scenarios"):  # demo.py: share_file("config/scenarios/demo.yaml")
        for path in sorted((REPO / folder).glob("*.yaml")):
            assert f"share/{PACKAGE}/{folder}/{path.name}" in files, f"setup.py does not install {folder}/{path.name}"


def test_every_file_a_shipped_profile_names_is_installed_beside_it(monkeypatch):
    """Profiles name their graphs relative to themselves: installed under share/, the same relative paths must
    land on installed files (models/base and the pruned variants in models/variants)."""
    import yaml

    files = _data_files(monkeypatch)
    for profile in sorted((REPO / "config" / "profiles").glob("*.yaml")):
        data = yaml.safe_load(profile.read_text())
        installed_dir = Path(f"share/{PACKAGE}/config/profiles")
        named = [data["detector"]] + [v[k] for v in data["variants"] for k in ("onnx", "checkpoint") if v.get(k)]
        # a graph's weights file (shared by a model folder's graphs) must be installed beside it too
        named += [os.path.relpath(f, profile.parent) for v in data["variants"]
                  for f in graph_files(profile.parent / v["onnx"])[1:]]
        for rel in named:
            dest = os.path.normpath(installed_dir / rel)
            assert dest in files, f"{profile.name} names {rel}, which setup.py does not install ({dest})"
            assert files[dest].resolve() == (profile.parent / rel).resolve()


def test_the_shipped_models_stay_within_100_mb():
    """The repository carries the models the package installs (models/base and the profile's pruned variants)."""
    files = [p for p in (REPO / "models").rglob("*") if p.is_file()]
    total = sum(p.stat().st_size for p in files)
    assert files and total <= 100 * 10**6, f"models/ holds {total / 1e6:.1f} MB"
