#!/usr/bin/env bash
# Create ./.venv and install posezoo into it (idempotent; re-run after pulling).
#   bash bootstrap.sh         runtime + PyTorch training/export (what `posezoo demo` needs)
#   bash bootstrap.sh --dev   everything the test suite needs (adds TensorFlow and test tools)
# PyTorch is pinned to the CPU build first: a bare `torch` requirement would pull GBs of CUDA wheels.
set -euo pipefail
cd "$(dirname "$0")"
extras="torch"
[[ "${1:-}" == "--dev" ]] && extras="all"
PY="${PYTHON:-python3}"
if [[ ! -x .venv/bin/python ]]; then
  "$PY" -m venv .venv
fi
stamp=".venv/.posezoo-$extras-$(sha256sum pyproject.toml | cut -c1-16)"
if [[ ! -f "$stamp" ]]; then
  .venv/bin/python -m pip install -q --no-cache-dir --upgrade pip
  .venv/bin/python -m pip install -q --no-cache-dir "torch==2.13.0"
  .venv/bin/python -m pip install -q --no-cache-dir -e ".[$extras]"
  touch "$stamp"
fi
