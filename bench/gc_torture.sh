#!/bin/sh
# The GC torture tests run for longer than CI runs them (tests/db/test_gc_torture.py in-process,
# tests/e2e/test_gc_torture.py over HTTP: two serve replicas on PostgreSQL and moto S3, and serve
# on SQLite with `daohub gc run` beside it). Each runs for $1 seconds (default 1800).
#     bench/gc_torture.sh [SECONDS] [pytest options]
cd "$(dirname "$0")/.." || exit 2
seconds=${1:-1800}
[ $# -gt 0 ] && shift
python=.venv/bin/python
[ -x "$python" ] || python=python3
TORTURE_SECONDS=$seconds exec "$python" -m pytest -q -s -p no:cacheprovider \
    tests/db/test_gc_torture.py tests/e2e/test_gc_torture.py "$@"
