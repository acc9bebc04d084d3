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
    echo "==> creating .venv" >&2
    python3 -m venv .venv
  fi
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[fast]'
)
exec "$repo/.venv/bin/daohub" serve "$@"
