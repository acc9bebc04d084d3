#!/usr/bin/env bash
# Start DaoHub on embedded defaults: 127.0.0.1:5000, data in ./data, no config file needed.
#
#   ./scripts/serve.sh                                   # defaults
#   ./scripts/serve.sh --addr 0.0.0.0:5000 --data-dir /srv/daohub --config daohub.yml
#
# Creates .venv/ in the repository on first use and installs the project into it; arguments go
# to `daohub serve`. Relative paths (./data included) are taken from the directory you run it in.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
(
  cd "$repo"
  if [ ! -x .venv/bin/python ]; then
    # `python3 -m venv` needs ensurepip, which Debian's own python3 ships separately.
    if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
      SUDO=()
      if [ "$(id -u)" != 0 ]; then
        command -v sudo >/dev/null || { echo "==> python3-venv is missing, and not root" >&2; exit 1; }
        SUDO=(sudo)
      fi
      echo "==> installing python3-venv" >&2
      "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
      "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
    fi
    echo "==> creating .venv" >&2
    python3 -m venv .venv
  fi
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[fast]'
)
exec "$repo/.venv/bin/daohub" serve "$@"
