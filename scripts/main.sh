#!/usr/bin/env bash
# Set up and run the main job on the embedded defaults: generate a small nuScenes-format set, score its ground
# truth with the official metric (sanity check), and convert its validation scenes to ROS 2 bags.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh test
. .venv/bin/activate
out="${1:-data/demo}"
rm -rf "$out"
fusion-prune synth --out "$out/nuscenes" --train-scenes 2 --val-scenes 2 --scene-seconds 10
fusion-prune eval --dataroot "$out/nuscenes" --split mini_val --ground-truth --out "$out/eval_gt"
fusion-prune to-bag --dataroot "$out/nuscenes" --split mini_val --out "$out/bags"
