#!/usr/bin/env bash
# The test command: creates .venv if needed, installs what the tests need, runs ruff and pytest.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k download`.
set -euo pipefail
cd "$(dirname "$0")/.."

# The HTML view of `wmtp inspect-weights` is tested in headless Chromium (the test skips without it).
. scripts/setup.sh dev
apt_install chromedriver chromium chromium-driver || echo "could not install chromium: the browser test will be skipped" >&2

ruff check .
HF_HUB_OFFLINE=1 python -m pytest -q "$@"
