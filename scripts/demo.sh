#!/usr/bin/env bash
# The main job end to end on the embedded default: creates .venv if needed, installs the package and
# runs `wmtp demo` (recipes/tiny-demo.yaml). Extra arguments go to `wmtp demo`, e.g.
# `bash scripts/demo.sh recipes/tiny-demo.yaml eval.n_samples=20`.
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/setup.sh ""  # no extras; an explicit argument, or setup.sh would see this script's own arguments
HF_HUB_OFFLINE=1 wmtp demo "$@"
