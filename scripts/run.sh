#!/usr/bin/env bash
# Sets up the environment if needed and runs the project's main job: for now, training the quickstart
# config on real data (Fashion-MNIST) with the full evaluation suite, tracked in runs/mlflow.db.
# Extra arguments go to `coded-resnext train` (e.g. --smoke-test, --set train.epochs=2).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/env.sh
exec .venv/bin/coded-resnext train search_spaces/quickstart_train.yaml "$@"
