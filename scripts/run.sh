#!/usr/bin/env bash
# Sets up the environment if needed and runs the project's main job.
# For now: the paper's CIFAR-10 network benchmarked side by side (coded vs plain control vs the
# materialized reference, and one class's extracted binary classifier vs the full net).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/env.sh
mkdir -p runs
.venv/bin/coded-resnext bench model --preset coded_resnext29_10x11d --batch-size 32 --rounds 5 \
  --json runs/bench_coded_resnext29_10x11d.json "$@"
