#!/usr/bin/env bash
# Set up (scripts/setup.sh with the ROS 2 extra, then the interface packages PyPI lacks) and run the default test
# suite: the README's test command, and what CI runs.
set -euo pipefail
. "$(dirname "$0")/ros_env.sh"
python -m pytest -q "$@"
