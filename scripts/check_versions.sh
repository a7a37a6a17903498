#!/usr/bin/env bash
# Runs the test suite against other versions than the lock's, in a scratch virtual environment, so that a
# release that breaks the project inside pyproject.toml's ranges is seen here before a user sees it.
#
#   bash scripts/check_versions.sh            # newest: the newest versions pyproject.toml's ranges allow
#   bash scripts/check_versions.sh floor      # floor: Ray, MLflow and Optuna at their lowest allowed versions,
#                                             #        everything else at the lock's
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
"$py" -m pip install --quiet --upgrade pip
constraints=()
if [[ $mode == floor ]]; then
  # the lowest version each integration package's range allows, the rest as locked
  "$py" - > "$scratch/floor.txt" <<'PY'
import re
import tomllib

deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]
floors = {}
for dep in deps:
    match = re.match(r"^([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?\s*>=\s*([0-9][0-9.]*)", dep)
    if match and match[1].lower() in ("ray", "mlflow", "optuna"):
        floors[match[1].lower()] = match[2]
pinned = set(floors)
for line in open("constraints.txt"):
    name = line.split("==")[0].strip().lower()
    if line.strip() and not line.startswith("#") and name not in pinned:
        print(line.strip())
for name, version in floors.items():
    print(f"{name}=={version}")
PY
  constraints=(-c "$scratch/floor.txt")
  echo "[versions] floors: $(grep -E '^(ray|mlflow|optuna)==' "$scratch/floor.txt" | tr '\n' ' ')"
fi
echo "[versions] installing coded-resnext's dependencies (extras dev and server)"
"$py" -m pip install --quiet "${constraints[@]}" --upgrade --upgrade-strategy eager -e '.[dev,server]' 2>&1 \
  | grep -vE 'is ignored: it is neither|BuildBackendWarning|^\s*(!!|\*+|$)|with strategy|folders in your|name as your' || true
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
