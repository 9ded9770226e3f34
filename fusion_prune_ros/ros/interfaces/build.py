"""Build the ROS 2 interface packages PyPI lacks (vision_msgs, tf2_msgs) into this Python environment.

The node speaks vision_msgs and tf2_msgs, which only ROS 2 distributions ship. PyPI's Jazzy wheels ship the
rosidl generators instead, so `fusion-prune ros-setup` generates and compiles both packages from the copies of the
upstream definitions kept beside this file and installs them next to the wheels (sys.prefix), where rclpy finds
them with no extra environment variables. Where a sourced ROS 2 already has a package, its copy wins and nothing
is built, so the node talks to other nodes with the distribution's own types.
"""
from __future__ import annotations

import fcntl
import hashlib
import importlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from typing import Callable

from fusion_prune_ros.errors import UserError

INTERFACES_DIR = Path(__file__).resolve().parent
PACKAGES = ("vision_msgs", "tf2_msgs")
WHEEL_INCLUDES = INTERFACES_DIR / "wheel_includes.cmake"
STAMP_NAME = "fusion_prune_ros.stamp"
# What the builds find_package, directly or through rosidl: all come with `pip install -e .[ros]`.
BUILD_DEPENDENCIES = ("ament_cmake", "ament_cmake_ros", "python_cmake_module", "rosidl_default_generators",
                      "builtin_interfaces", "std_msgs", "geometry_msgs")
TOOLS = {"cmake": ("cmake",), "make": ("make",), "a C compiler": ("cc", "gcc", "clang"),
         "a C++ compiler": ("c++", "g++", "clang++")}


def _index_marker(prefix: Path, package: str) -> Path:
    """The ament index entry that says `package` is installed under `prefix`."""
    return prefix / "share" / "ament_index" / "resource_index" / "packages" / package


def provided_elsewhere(package: str) -> str | None:
    """The AMENT_PREFIX_PATH entry outside this environment that has `package` (a sourced ROS 2), or None.

    This is the lookup ament_index_python.get_package_prefix does, minus this environment's own prefix.
    """
    own = Path(sys.prefix).resolve()
    for entry in filter(None, os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep)):
        if Path(entry).resolve() != own and _index_marker(Path(entry), package).is_file():
            return entry
    return None


def _fingerprint(package: str) -> dict:
    """What the installed build depends on: its sources, and the Python and NumPy its extension is compiled for."""
    import numpy

    digest = hashlib.sha256(WHEEL_INCLUDES.read_bytes())
    source = INTERFACES_DIR / package
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        digest.update(path.relative_to(source).as_posix().encode() + b"\0" + path.read_bytes())
    return {"sources": digest.hexdigest(), "numpy": numpy.__version__, "python": sys.version.split()[0]}


def _stamp(package: str) -> Path:
    """Installed with the package, so it goes away with the environment it describes."""
    return Path(sys.prefix) / "share" / package / STAMP_NAME


def _up_to_date(package: str) -> bool:
    stamp = _stamp(package)
    return (_index_marker(Path(sys.prefix), package).is_file() and stamp.is_file()
            and json.loads(stamp.read_text()) == _fingerprint(package))


def _check_prerequisites() -> None:
    """Fail with one line the user can act on before cmake fails with a hundred."""
    missing = [name for name, names in TOOLS.items() if not any(shutil.which(n) for n in names)]
    if missing:
        raise UserError(f"building the ROS interface packages needs {', '.join(missing)}: install them "
                        f"(Debian/Ubuntu: apt-get install cmake make gcc g++)")
    absent = [p for p in BUILD_DEPENDENCIES if not _index_marker(Path(sys.prefix), p).is_file()]
    if absent:
        raise UserError(f"the ROS 2 wheels are not installed in {sys.prefix} (missing {', '.join(absent)}): "
                        f"run pip install -e .[ros]")


def _build(package: str, work: Path, say: Callable[[str], None]) -> None:
    """Configure, build and install one package into sys.prefix; the log stays in `work` if a step fails."""
    import numpy

    prefix = sys.prefix
    build = work / package
    log_path = work / f"{package}.log"
    include_dirs = ";".join([sysconfig.get_paths()["include"], numpy.get_include()])
    steps = [
        ("configure", ["cmake", "-S", str(INTERFACES_DIR / package), "-B", str(build),
                       f"-DCMAKE_INSTALL_PREFIX={prefix}", f"-DPython3_EXECUTABLE={sys.executable}",
                       "-DBUILD_TESTING=OFF", f"-DCMAKE_PROJECT_INCLUDE={WHEEL_INCLUDES}",
                       f"-DFUSION_PRUNE_PYTHON_INCLUDE_DIRS={include_dirs}"]),
        ("build", ["cmake", "--build", str(build), "--parallel", str(os.cpu_count() or 1)]),
        ("install", ["cmake", "--install", str(build)]),
    ]
    # Only this environment's wheels: a sourced ROS 2 of another version must not mix into the build.
    env = dict(os.environ, AMENT_PREFIX_PATH=prefix, CMAKE_PREFIX_PATH=prefix)
    with open(log_path, "w") as log:
        for step, command in steps:
            start = time.monotonic()
            say(f"ros-setup: {package}: {step} ...")
            log.write(f"$ {' '.join(command)}\n")
            log.flush()
            if subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env).returncode != 0:
                raise UserError(f"ros-setup: {package}: {step} failed, see {log_path}")
            say(f"ros-setup: {package}: {step} done in {time.monotonic() - start:.0f} s")


def setup_interfaces(force: bool = False, quiet: bool = False) -> dict:
    """Make vision_msgs and tf2_msgs importable from this environment, building them only when needed.

    A package is skipped when a sourced ROS 2 provides it, or when this environment already holds a build of the
    same sources for the same Python and NumPy (unless `force`). Returns {"built": [...], "skipped":
    {package: reason}, "seconds": float}. A lock serialises concurrent calls (two test runs, say), so the second
    finds the first one's build instead of racing it.
    """
    start = time.monotonic()
    say: Callable[[str], None] = (lambda line: None) if quiet else (lambda line: print(line, flush=True))
    skipped: dict[str, str] = {}
    for package in PACKAGES:
        elsewhere = provided_elsewhere(package)
        if elsewhere:
            skipped[package] = f"provided by {elsewhere}"
            say(f"ros-setup: {package}: provided by the sourced ROS 2 at {elsewhere}, not built")
    wanted = [p for p in PACKAGES if p not in skipped]
    built: list[str] = []
    if wanted:
        _check_prerequisites()
        with open(Path(sys.prefix) / "share" / ".fusion_prune_ros_interfaces.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            todo = [p for p in wanted if force or not _up_to_date(p)]
            for package in wanted:
                if package not in todo:
                    skipped[package] = "up to date"
                    say(f"ros-setup: {package}: up to date in {sys.prefix}")
            if todo:
                work = Path(tempfile.mkdtemp(prefix="fusion-prune-ros-setup-"))
                for package in todo:
                    _build(package, work, say)
                    _stamp(package).write_text(json.dumps(_fingerprint(package)))
                    built.append(package)
                shutil.rmtree(work)
                importlib.invalidate_caches()  # lets this process import the packages it has just installed
    return {"built": built, "skipped": skipped, "seconds": round(time.monotonic() - start, 1)}
