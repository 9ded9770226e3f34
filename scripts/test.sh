#!/usr/bin/env bash
# Set up (scripts/setup.sh with the ROS 2 extra, then the interface packages PyPI lacks) and run the default test
# suite: the README's test command, and what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh test,ros
. .venv/bin/activate
# ROS processes started by tests keep DDS discovery on loopback: the default discovery multicasts off the machine.
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
fusion-prune ros-setup --quiet
python -m pytest -q "$@"
