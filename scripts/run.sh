#!/usr/bin/env bash
# Sets up the environment if needed and runs the project's main job: the quickstart search
# (search_spaces/quickstart.yaml) on Ray Tune -- a multi-objective search over coding schemes, mu,
# p_drop and width on real data (Fashion-MNIST), every trial tracked as a nested MLflow run in
# runs/mlflow.db -- then prints where the results are. About 4 minutes on 2 quiet CPU cores
# (235 s measured), 20 when other jobs share them; --smoke-test: about 2 minutes (search_spaces/quickstart.yaml).
# Extra arguments go to `coded-resnext tune` (e.g. --smoke-test, --resume, --extend 4, --address auto).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/env.sh
exec .venv/bin/coded-resnext tune search_spaces/quickstart.yaml "$@"
