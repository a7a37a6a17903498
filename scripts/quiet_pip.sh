#!/usr/bin/env bash
# Runs a pip command (its arguments: e.g. .venv/bin/python -m pip install ...) and keeps its output but for
# one known-harmless warning: "Location '...' is ignored", which pip prints for every configured index or
# find-links location that does not exist here and, per package, for every local index that lacks it (a
# site-wide pip.conf written for other machines: screens of it at set-up). Every other line, warnings and
# errors included, goes through; the exit status is pip's.
set -euo pipefail
{ "$@" 2>&1 1>&3 3>&- | { grep -v -E "^WARNING: Location '[^']*' is ignored: " || true; } >&2; } 3>&1
