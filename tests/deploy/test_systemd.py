"""deploy/systemd: the unit's hardening and stop timeout, and `systemd-analyze verify` where present."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .files import SYSTEMD_DIR, load_deploy_config, read_unit, systemd_seconds

UNIT = SYSTEMD_DIR / "daohub.service"


@pytest.fixture(scope="module")
def service():
    return read_unit(UNIT)["Service"]


def _one(service: dict, key: str) -> str:
    values = service.get(key)
    assert values, f"{key} is not set"
    return values[-1]


def test_runs_as_a_dedicated_user_with_its_state_directory(service):
    assert _one(service, "User") == "daohub"
    assert _one(service, "StateDirectory") == "daohub"
    config = load_deploy_config("systemd/config.yaml")
    assert config.data_dir == "/var/lib/daohub"
    assert _one(service, "ReadWritePaths") == config.data_dir
    assert str(config.storage_root).startswith(config.data_dir + "/")
    assert config.database_url == f"sqlite:///{config.data_dir}/daohub.db"


@pytest.mark.parametrize(("key", "value"), [
    ("NoNewPrivileges", "yes"),
    ("ProtectSystem", "strict"),
    ("ProtectHome", "yes"),
    ("PrivateTmp", "yes"),
    ("Restart", "on-failure"),
    ("KillSignal", "SIGTERM"),
])
def test_hardening_and_restart(service, key, value):
    assert _one(service, key) == value


def test_stop_timeout_covers_the_drain(service):
    config = load_deploy_config("systemd/config.yaml")
    # Request bodies drain for up to shutdown_timeout, then responses for as long again.
    assert systemd_seconds(_one(service, "TimeoutStopSec")) > 2 * config.server.shutdown_timeout


def test_systemd_seconds():
    assert systemd_seconds("75s") == 75
    assert systemd_seconds("1min 30s") == 90
    assert systemd_seconds("90") == 90


def test_systemd_analyze_verify(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        # systemd-analyze is optional (not every test machine has systemd), so this skips even
        # under CI; the tests above check the unit's settings without it.
        pytest.skip("systemd-analyze is not installed; an optional tool for this check")
    # verify insists that ExecStart's binary exists: point it at this checkout's entry point.
    daohub = Path(sys.executable).with_name("daohub")
    if not daohub.exists():
        daohub = Path(shutil.which("daohub") or "/bin/true")
    units = []
    for source in sorted(SYSTEMD_DIR.glob("daohub*.*")):
        if source.suffix not in (".service", ".timer"):
            continue
        target = tmp_path / source.name
        target.write_text(source.read_text().replace("/usr/local/bin/daohub", str(daohub)))
        units.append(str(target))
    assert len(units) >= 1
    result = subprocess.run([analyze, "verify", *units], check=False, capture_output=True, text=True,
                            timeout=120, cwd=tmp_path)
    output = result.stdout + result.stderr
    # verify exits 0 on unknown keys and bad values but names the file and line: any mention of
    # our units is a problem (messages about the host's own units are not ours to judge).
    ours = [line for line in output.splitlines() if str(tmp_path) in line or "daohub" in line]
    assert result.returncode == 0 and not ours, output
