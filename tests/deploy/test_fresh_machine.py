"""scripts/test.sh on a freshly installed Debian 12: every program the tests run, and every shared
library Playwright's bundled node links, comes from a Debian package the script installs (one of
DEBIAN_PACKAGES, or something those depend on). A package that is only on this machine because
someone installed it by hand, or because apt happened to pull in a recommendation, fails here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.e2e.util import IN_CI
from tests.helpers.server import REPO_ROOT

SCRIPT = REPO_ROOT / "scripts" / "test.sh"
# What the tests run: every need_tool()/shutil.which() name of tests/, and the servers the session
# fixtures start by path. Optional tools that skip even under CI (kubectl, systemd-analyze) are not here.
TOOLS = ("buildah", "podman", "skopeo", "docker", "dockerd", "containerd", "ctr", "docker-registry", "curl",
         "git", "ip", "nginx", "ganesha.nfsd", "rpcbind", "busybox", "chromium",
         "/usr/lib/postgresql/15/bin/initdb", "/usr/lib/postgresql/15/bin/pg_ctl", "/usr/sbin/slapd", "ldapadd",
         "ldapmodify")


def _unavailable(reason: str):
    if IN_CI:
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def _run(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=120).stdout


def debian_packages() -> list[str]:
    """DEBIAN_PACKAGES as bash reads it from scripts/test.sh."""
    body = SCRIPT.read_text()
    start = body.index("DEBIAN_PACKAGES=(")
    block = body[start:body.index("\n)", start) + 2]
    return _run("bash", "-c", block + '\nprintf "%s\\n" "${DEBIAN_PACKAGES[@]}"').split()


@pytest.fixture(scope="module")
def installed_by_script() -> set[str]:
    """Every package apt installs for DEBIAN_PACKAGES (and python3-venv, which the script adds when
    ensurepip is missing), following Depends and Pre-Depends only: Recommends may be switched off."""
    if not (shutil.which("apt-cache") and shutil.which("dpkg")):
        _unavailable("apt-cache and dpkg are needed to follow Debian dependencies")
    out = _run("apt-cache", "depends", "--recurse", "--no-recommends", "--no-suggests", "--no-conflicts",
               "--no-breaks", "--no-replaces", "--no-enhances", *debian_packages(), "python3-venv")
    return {line.strip() for line in out.splitlines() if line and not line[0].isspace()}


def owner(path: str) -> str:
    """The Debian package that installed `path` (through symlinks, and /lib as /usr/lib)."""
    candidates = [os.path.realpath(path), path]
    candidates += [c.replace("/usr/lib/", "/lib/", 1) for c in candidates if c.startswith("/usr/lib/")]
    candidates += [c.replace("/usr/bin/", "/bin/", 1) for c in candidates if c.startswith("/usr/bin/")]
    candidates += [c.replace("/usr/sbin/", "/sbin/", 1) for c in candidates if c.startswith("/usr/sbin/")]
    for candidate in candidates:
        found = subprocess.run(["dpkg", "-S", candidate], check=False, capture_output=True, text=True)
        if found.returncode == 0:
            return found.stdout.split(":", 1)[0].split(",")[0].strip()
    raise AssertionError(f"no Debian package owns {path}")


def test_playwrights_node_links_only_libraries_the_script_installs(installed_by_script):
    try:
        import playwright
    except ImportError:
        _unavailable("the playwright package is not installed (pip install -e '.[test]')")
    node = Path(playwright.__file__).parent / "driver" / "node"
    assert node.exists(), node
    libraries = [line.split("=>")[1].split()[0] for line in _run("ldd", str(node)).splitlines()
                 if "=>" in line and "/" in line.split("=>")[1]]
    assert any("libatomic" in lib for lib in libraries), libraries
    missing = {lib: owner(lib) for lib in libraries if owner(lib) not in installed_by_script}
    assert not missing, f"scripts/test.sh does not install the packages of {missing}"


@pytest.mark.parametrize("tool", TOOLS)
def test_every_tool_the_tests_run_comes_from_a_package_the_script_installs(tool, installed_by_script):
    # Debian's own directories: a machine may have its own build in /usr/local (a fresh one does not).
    path = tool if tool.startswith("/") else shutil.which(tool, path="/usr/bin:/usr/sbin:/bin:/sbin")
    if not path or not os.path.exists(path):
        _unavailable(f"{tool} is not installed (scripts/test.sh installs it)")
    package = owner(path)
    assert package in installed_by_script, f"{tool} comes from {package}, which scripts/test.sh does not install"
