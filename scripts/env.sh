#!/usr/bin/env bash
# Creates (or updates) the project's virtual environment in .venv, then returns.
# Installs the versions CI tests (constraints.txt, the lock: scripts/lock.sh regenerates it). Idempotent:
# re-installs only when pyproject.toml or the lock changed since the last install.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
  echo "[env] creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
# System packages, where apt is available and we may use it: real data offline (Debian's
# dataset-fashion-mnist), PostgreSQL (the tests' MLflow server backend) and Chromium (the report test).
need=()
[[ -d /usr/share/datasets/fashion-mnist ]] || need+=(dataset-fashion-mnist)
command -v initdb >/dev/null || [[ -d /usr/lib/postgresql ]] || need+=(postgresql)
command -v chromium >/dev/null || need+=(chromium)
if (( ${#need[@]} )) && command -v apt-get >/dev/null && [[ $(id -u) == 0 ]]; then
  echo "[env] installing Debian packages: ${need[*]}"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"; } >/dev/null 2>&1 \
    || echo "[env] could not install ${need[*]}; tests that need them are skipped (data: set data.root)"
fi
stamp=.venv/.coded-resnext-installed
want=$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)
if [[ ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
  echo "[env] installing coded-resnext and the locked versions of its dependencies into .venv (first time: several minutes)"
  bash scripts/quiet_pip.sh .venv/bin/python -m pip install --quiet --upgrade pip
  bash scripts/quiet_pip.sh .venv/bin/python -m pip install --quiet -c constraints.txt -e '.[dev]'
  echo "$want" > "$stamp"
fi
