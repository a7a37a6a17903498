#!/usr/bin/env bash
# Runs the test suite against other versions than the lock's, in a scratch virtual environment, so that a
# release that breaks the project inside pyproject.toml's ranges is seen here before a user sees it.
#
#   bash scripts/check_versions.sh            # newest: the newest versions pyproject.toml's ranges allow
#   bash scripts/check_versions.sh floor      # floor: Ray, MLflow and Optuna at their lowest allowed versions,
#                                             #        everything else as pip resolves it beside them
#   bash scripts/check_versions.sh newest -x tests/test_tune.py   # extra arguments go to pytest
#
# The scratch environment is made in a temporary directory ($TMPDIR) and removed afterwards (KEEP=1 keeps
# it); .venv and constraints.txt are not touched. It prints which installed versions differ from the lock,
# then the suite's result (test_lock.py is left out: it checks that the suite runs on the lock's versions,
# which here it does not by design). Costs an install (torch included: several minutes, ~6 GB of disk for a
# CUDA build) and a run of the suite.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-newest}
[[ $# -gt 0 ]] && shift
case $mode in
  newest | floor) ;;
  *) echo "check_versions: unknown mode '$mode'; use newest or floor" >&2; exit 2 ;;
esac
PYTHON=${PYTHON:-python3}
scratch=$(mktemp -d "${TMPDIR:-/tmp}/coded-resnext-$mode.XXXXXX")
[[ ${KEEP:-0} == 1 ]] || trap 'rm -rf "$scratch"' EXIT
echo "[versions] $mode: scratch environment in $scratch"
"$PYTHON" -m venv "$scratch/venv"
py=$scratch/venv/bin/python
bash scripts/quiet_pip.sh "$py" -m pip install --quiet --upgrade pip
constraints=()
if [[ $mode == floor ]]; then
  # the lowest version each integration package's range allows; pip resolves the rest beside them
  "$py" - > "$scratch/floor.txt" <<'PY'
import re
import tomllib

deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]
for dep in deps:
    match = re.match(r"^([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?\s*>=\s*([0-9][0-9.]*)", dep)
    if match and match[1].lower() in ("ray", "mlflow", "optuna"):
        print(f"{match[1].lower()}=={match[2]}")
PY
  constraints=(-c "$scratch/floor.txt")
  echo "[versions] floors: $(tr '\n' ' ' < "$scratch/floor.txt")"
fi
echo "[versions] installing coded-resnext's dependencies (extras dev and server)"
"$py" -m pip install --quiet "${constraints[@]}" --upgrade --upgrade-strategy eager -e '.[dev,server]' \
  > "$scratch/pip.log" 2>&1 || { grep -v 'is ignored: it is neither' "$scratch/pip.log" | tail -30; echo "[versions] $mode: the install failed (above)"; exit 1; }
echo "[versions] installed versions that differ from the lock (constraints.txt):"
"$py" - <<'PY'
from importlib.metadata import distributions

lock = {}
for line in open("constraints.txt"):
    if line.strip() and not line.startswith("#"):
        name, _, version = line.strip().partition("==")
        lock[name.lower().replace("_", "-")] = version
differ = 0
for dist in sorted(distributions(), key=lambda d: d.metadata["Name"].lower()):
    name = dist.metadata["Name"].lower().replace("_", "-")
    if name in lock and lock[name] != dist.version:
        print(f"  {name}: {lock[name]} -> {dist.version}")
        differ += 1
print(f"  ({differ} of {len(lock)} differ)")
PY
echo "[versions] running the suite"
"$py" -m pytest -p no:cacheprovider --ignore tests/test_lock.py "$@"
