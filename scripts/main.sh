#!/usr/bin/env bash
# Set up and run the main job on the embedded defaults: the demo (a generated scene as a ROS 2 bag, played through
# the real node over DDS on loopback under a scenario, recorded and scored). Output: runs/demo (or $1).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh test,ros
. .venv/bin/activate
# Every ROS process here keeps DDS discovery on this machine: the default discovery multicasts off it.
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
fusion-prune ros-setup --quiet
out="${1:-runs/demo}"
rm -rf "$out"
fusion-prune demo --out "$out"
