#!/usr/bin/env bash
# The test command: creates .venv if needed, installs what the tests need, runs ruff and pytest.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k download`.
set -euo pipefail
cd "$(dirname "$0")/.."

# The sandbox tests exercise bubblewrap isolation; install it where we can (Debian, as root).
if ! command -v bwrap >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  apt-get install -y -q bubblewrap >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q bubblewrap >/dev/null; } || echo "could not install bubblewrap: sandbox tests run without it" >&2
fi
# The HTML view of `wmtp inspect-weights` is tested in headless Chromium; install it where we can (the test skips without).
if ! command -v chromedriver >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium chromium-driver >/dev/null 2>&1; } || echo "could not install chromium: the browser test will be skipped" >&2
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
. .venv/bin/activate
python -m pip install --quiet --upgrade pip
# A CPU build of torch keeps the install small; set WMTP_TORCH to choose another (e.g. "torch" for CUDA).
python -c "import torch" 2>/dev/null || python -m pip install --quiet "${WMTP_TORCH:-torch==2.13.0}"
python -m pip install --quiet -e ".[dev]"

ruff check .
HF_HUB_OFFLINE=1 python -m pytest -q "$@"
