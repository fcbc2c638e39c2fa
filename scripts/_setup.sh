# Sourced by scripts/test and scripts/demo: make the venv, install the Python dependencies and
# the Debian packages the local servers need. Idempotent and quiet when all is in place.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

apt_install() {
  if [ "$(id -u)" != 0 ]; then
    echo "setup: missing Debian packages $*; run this as root (or install them) first" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

command -v python3 >/dev/null 2>&1 || apt_install python3
python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
  echo "setup: Python 3.11 or newer is needed, found $(python3 --version)" >&2; exit 1; }

# Debian ships venv's pip bootstrap separately (python3-venv): without it `python3 -m venv`
# fails half-way, leaving a .venv with no pip, so check for pip, not for the directory.
if [ ! -x .venv/bin/pip ]; then
  rm -rf .venv
  if ! python3 -m venv .venv >/dev/null 2>&1; then
    rm -rf .venv
    apt_install python3-venv
    python3 -m venv .venv
  fi
fi
# Reinstall only when the dependency list changed.
stamp=.venv/.deps-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  .venv/bin/python -m pip install -q -e '.[dev]'
  rm -f .venv/.deps-*
  touch "$stamp"
fi

bash scripts/install-system-deps
