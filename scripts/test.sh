#!/usr/bin/env bash
# The one test command: install what the tests need, then run pytest.
#
#   ./scripts/test.sh                    # the whole suite
#   ./scripts/test.sh tests/registry -x  # arguments go to pytest
#
# On a fresh Debian 12 machine (as root, or with sudo) it installs the missing Debian packages
# (real clients for the end-to-end tests and CNCF distribution), creates .venv/ if absent,
# installs the project with its test extras into it, and runs `.venv/bin/python -m pytest`
# from the repository root. pytest's "no tests collected" (exit 5) is a failure here.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

export PYTHONUNBUFFERED=1
export PIP_DISABLE_PIP_VERSION_CHECK=1
export PIP_NO_INPUT=1
export DEBIAN_FRONTEND=noninteractive
# CI (CI=true) is passed through untouched: under CI a missing client tool fails the e2e tests.
export CI="${CI:-}"

log() { printf '==> %s\n' "$*" >&2; }

# --- Debian packages ------------------------------------------------------------------------
# skopeo, podman, buildah, docker.io: the real clients of tests/e2e (dockerd comes with docker.io)
# docker-registry: CNCF distribution, for side-by-side runs and benchmarks
# busybox-static: the only binary inside the images the e2e tests build FROM scratch (no network)
# curl, ca-certificates: plain HTTP checks and pip's TLS
# postgresql: a throwaway cluster per test session (the tests run initdb/pg_ctl themselves)
# nginx-light: the load balancer in front of several replicas
# nfs-ganesha, nfs-ganesha-vfs, rpcbind: a userspace NFSv3 server for the nfs driver's tests
# libnfs-dev: brings libnfs.so, which the nfs storage driver loads through ctypes
# chromium: the headless browser of the web catalog's tests (driven by Playwright; never `playwright install`)
# libatomic1: the node binary inside Playwright's Python wheel links libatomic.so.1, which a fresh
#   Debian 12 lacks (without it every browser test errors in setup)
# npm: installs axe-core (the console's accessibility check) into .cache/node; asked of apt only when
#   no npm is on PATH (a machine with NodeSource's nodejs has npm already, and Debian's npm package
#   conflicts with that nodejs: apt refuses with 'held broken packages')
# git: the git CLI of the app store's git-endpoint tests (tests/appstore/test_git.py)
# slapd, ldap-utils: a throwaway OpenLDAP server per test session for LDAP sign-in (tests/helpers/slapd.py
#   starts it itself on a loopback port; ldapadd/ldapmodify load and change its entries)
# iproute2: `ip netns` and veth pairs for test hosts of the tests' own (tests/helpers/netns.py;
#   dockerd checks a registry's certificate only off loopback)
# rsyslog: the real syslog listener of the audit export's syslog sink tests (tests/events/test_audit_export.py
#   starts rsyslogd unprivileged on loopback UDP and TCP ports with a config of its own)
DEBIAN_PACKAGES=(
  skopeo podman buildah docker.io docker-registry busybox-static
  curl ca-certificates git iproute2
  postgresql nginx-light nfs-ganesha nfs-ganesha-vfs rpcbind libnfs-dev
  chromium libatomic1 slapd ldap-utils rsyslog
  wrk  # tests/bench's smoke run of bench/workers_bench.py (its load generator)
)
command -v npm >/dev/null 2>&1 || DEBIAN_PACKAGES+=(npm)

installed() { [[ "$(dpkg -s "$1" 2>/dev/null)" == *"Status: install ok installed"* ]]; }

missing=()
for pkg in "${DEBIAN_PACKAGES[@]}"; do
  installed "$pkg" || missing+=("$pkg")
done
# `python3 -m venv` needs ensurepip, which Debian's own python3 ships separately.
if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
  missing+=("python3-venv")
fi

if ((${#missing[@]})); then
  SUDO=()
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || { log "missing Debian packages ${missing[*]}, and not root"; exit 1; }
    SUDO=(sudo -E)
  fi
  log "installing Debian packages: ${missing[*]}"
  # Keep package scripts from starting services (docker.io would start a system dockerd);
  # the tests start their own daemons.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee /usr/sbin/policy-rc.d >/dev/null
    "${SUDO[@]}" chmod 755 /usr/sbin/policy-rc.d
    trap '"${SUDO[@]}" rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  status=0
  "${SUDO[@]}" apt-get update -qq || status=$?
  if [ "$status" = 0 ]; then
    "${SUDO[@]}" apt-get install -y -qq -o Dpkg::Use-Pty=0 "${missing[@]}" || status=$?
  fi
  if [ "$status" != 0 ]; then
    log "apt-get failed (exit $status)"
    exit "$status"
  fi
fi

# --- Python environment --------------------------------------------------------------------
if [ ! -x .venv/bin/python ]; then
  log "creating .venv"
  python3 -m venv .venv
fi
log "installing the project with its test extras into .venv"
.venv/bin/python -m pip install --quiet -e '.[test,fast]'
# axe-core: the accessibility checker the console's browser tests run in the page
# (tests/web/test_console.py); project-local and git-ignored, pinned to one major version.
if [ ! -f .cache/node/node_modules/axe-core/axe.min.js ]; then
  log "installing axe-core into .cache/node"
  npm install --silent --no-audit --no-fund --prefix .cache/node 'axe-core@4'
fi

# --- Tests ----------------------------------------------------------------------------------
log "running pytest $*"
status=0
.venv/bin/python -m pytest "$@" || status=$?
if [ "$status" = 5 ]; then
  log "pytest collected no tests: that is a failure"
  exit 1
fi
exit "$status"
