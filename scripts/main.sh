#!/usr/bin/env bash
# Set up and run the main job on the embedded defaults: the demo (a generated scene as a ROS 2 bag, played through
# the real node over DDS on loopback under a scenario, recorded and scored). Output: runs/demo (or $1).
set -euo pipefail
. "$(dirname "$0")/ros_env.sh"
out="${1:-runs/demo}"
rm -rf "$out"
fusion-prune demo --out "$out"
