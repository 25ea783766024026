#!/usr/bin/env bash
# dxray as a user installs it: the wheel built from this tree, installed into a fresh virtual
# environment outside the checkout, run from another directory: a small audit of the committed
# toy zoo (package data), then SQL over its catalog. Exits non-zero on any failure.
#   .ci/install_check.sh            (CI runs it after `make test`; ~2-4 minutes from pip's cache)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
python3 -m venv "$WORK/venv"
PIP=("$WORK/venv/bin/python" -m pip install -q)
"${PIP[@]}" --upgrade pip
"${PIP[@]}" torch==2.13.0            # the CPU wheel first (a bare torch may pull a CUDA build)
"$WORK/venv/bin/python" -m pip wheel -q --no-deps -w "$WORK/dist" "$ROOT"
"${PIP[@]}" "$WORK"/dist/dxray-*.whl
mkdir "$WORK/elsewhere"
cd "$WORK/elsewhere"
export OMP_NUM_THREADS=1
"$WORK/venv/bin/dxray" demo --limit 2          # writes ./catalogs/toy and its report
"$WORK/venv/bin/dxray" sql catalogs/toy "SELECT count(*) AS explained FROM explanations"
echo "install check: the wheel's dxray audited and answered SQL from $WORK/elsewhere"
