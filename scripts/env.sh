#!/usr/bin/env bash
# Creates (or updates) the project's virtual environment in .venv, then returns.
# Idempotent: re-installs only when pyproject.toml changed since the last install.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
  echo "[env] creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
# Real data offline: Fashion-MNIST from Debian's package, where apt is available and we may use it.
if [[ ! -d /usr/share/datasets/fashion-mnist ]] && command -v apt-get >/dev/null && [[ $(id -u) == 0 ]]; then
  echo "[env] installing Debian's dataset-fashion-mnist (real data for the quickstart)"
  { apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist; } >/dev/null 2>&1 \
    || echo "[env] could not install dataset-fashion-mnist; set data.root to a directory with its IDX files"
fi
stamp=.venv/.coded-resnext-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [[ ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
  echo "[env] installing coded-resnext and its dependencies into .venv (first time: several minutes)"
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e '.[dev]'
  echo "$want" > "$stamp"
fi
