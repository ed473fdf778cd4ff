#!/usr/bin/env bash
# Create .venv and install KoCLIP's pinned requirements into it.
# Usage: scripts/setup.sh [requirements file]   (default: requirements.txt)
set -euo pipefail
cd "$(dirname "$0")/.."
requirements="${1:-requirements.txt}"
python=${PYTHON:-python3.11}
command -v "$python" >/dev/null || python=python3
# A .venv left half-made by an interrupted setup (no pip in it) is made again.
if ! .venv/bin/python -m pip --version >/dev/null 2>&1; then
  rm -rf .venv
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
# The app needs neither torch nor transformers (requirements.txt); the tests add both (requirements-dev.txt).
.venv/bin/python -m pip install --quiet -r "$requirements"
# Peers the tests check against whose own dependencies are heavy or conflict with the pins
# (requirements-nodeps.txt) go in without their dependencies, beside the development requirements.
if [ "$requirements" = requirements-dev.txt ] && [ -s requirements-nodeps.txt ]; then
  .venv/bin/python -m pip install --quiet --no-deps -r requirements-nodeps.txt
fi
# koclip itself, from this folder (editable), so that scripts and benchmarks import it from anywhere.
# "compat" puts this folder on sys.path, so the package wins over a folder named koclip in the
# working directory (the parent of a clone called koclip), which the default mode's finder loses to.
PYTHONWARNINGS=ignore .venv/bin/python -m pip install --quiet --no-deps -e . --config-settings editable_mode=compat
