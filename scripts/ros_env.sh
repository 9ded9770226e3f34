# Sourced by the README's commands (scripts/main.sh, scripts/test.sh), under their `set -euo pipefail`: the
# environment every ROS process they start runs in. Leaves the caller in the repository root with .venv active,
# the package installed with the test and ros extras, and the ROS interface packages PyPI lacks built.
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup.sh test,ros
. .venv/bin/activate
# Every ROS process here keeps DDS discovery on this machine: the default discovery multicasts off it.
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
fusion-prune ros-setup --quiet
