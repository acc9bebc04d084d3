"""Progress of the long jobs, as an operator sees it: `daohub transfer`, `gc run` and `retention run`
on data a `daohub serve` wrote. Piped (not a terminal), each prints plain progress lines on stderr and
keeps stdout for its results (JSON with --json); on a terminal (a pty from Python's pty module) it
draws rich's live bar with bytes or items, rate and time left."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import termios
from pathlib import Path

import pytest
import requests

from tests.helpers.server import REPO_ROOT, DaoHubProcess, blob_files

from .test_cli import OCI_MANIFEST, push_image

# Sizes of the layers pushed: enough bytes that the copy reports several tenths on its way.
LAYERS = tuple(300_000 + i for i in range(8))
POLICY = {"rules": [{"tags": {"glob": "**"}, "keep": {"latest_pushed": 1}}]}
# What rich draws in the bar: the bar's own characters, and a rate.
BAR = re.compile("[\u2501\u2578\u257a]")
PLAIN = re.compile(r"^(blobs|gc|retention)(?: dry run)?: \d+% \(.*\) at .*/s, (ETA \d+:\d\d:\d\d|done in \d+:\d\d:\d\d)$")


@pytest.fixture(scope="module")
def registry():
    """A data directory (SQLite + filesystem) with tenant team, 3 tags of team/app and a retention
    policy that keeps only the newest tag; and its config file."""
    root = Path(tempfile.mkdtemp(prefix="dh-progress-", dir="/tmp"))
    data = root / "old"
    config = root / "old.yaml"
    config.write_text(f"data_dir: {data}\nlog:\n  access_log: false\n")
    with DaoHubProcess(data, config=config) as hub:
        hub.cli("tenant", "create", "team")
        for tag in ("1", "2", "3"):
            push_image(hub.url, "team/app", tag, layer_sizes=LAYERS[:3] if tag != "3" else LAYERS[3:])
        hub.cli("retention", "policy", "set", "--tenant", "team", "--file", "-", stdin=json.dumps(POLICY))
    try:
        yield root, config
    finally:
        shutil.rmtree(root, ignore_errors=True)


def environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAOHUB_")
           and k not in ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "COLUMNS", "LINES")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env["TERM"] = "xterm-256color"
    return env


def piped(*args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "hub", *args], cwd=REPO_ROOT, env=environment(),
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    return result


def in_pty(*args: str, workdir: Path) -> str:
    """Run the command with stdout on a pseudo-terminal (120 columns); everything it wrote there."""
    primary, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    with open(workdir / "stderr.txt", "wb") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "hub", *args], cwd=REPO_ROOT, env=environment(),
                                stdin=subprocess.DEVNULL, stdout=secondary, stderr=stderr)
    os.close(secondary)
    chunks = []
    try:
        while True:
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(primary)
        code = proc.wait(timeout=300)
    assert code == 0, (workdir / "stderr.txt").read_text()
    return b"".join(chunks).decode("utf-8", "replace")


def plain_lines(stderr: str, job: str) -> list[str]:
    lines = [line for line in stderr.splitlines() if line.startswith(f"{job}")]
    assert lines and all(PLAIN.match(line) for line in lines), stderr
    return lines


def test_transfer_piped_prints_plain_progress_lines_on_a_terminal_a_bar(registry, tmp_path):
    root, config = registry
    for mode in ("piped", "pty"):
        target = tmp_path / mode
        target_config = tmp_path / f"{mode}.yaml"
        target_config.write_text(f"data_dir: {target}\nstorage:\n  root: {target / 'blobstore'}\n")
        args = ("transfer", "--config", str(config), "--to-config", str(target_config), "--skip-metadata",
                "--jobs", "1")
        if mode == "piped":
            result = piped(*args)
            lines = plain_lines(result.stderr, "blobs")
            # A line per tenth on the way (the copy goes chunk by chunk), and the last one.
            assert len(lines) >= 3 and lines[-1].startswith("blobs: 100% (") and "done in" in lines[-1]
            percents = [int(line.split()[1].rstrip("%")) for line in lines]
            assert percents == sorted(percents) and percents[0] < 100
            assert "MB/s" in lines[0] or "kB/s" in lines[0] or " B/s" in lines[0]
            assert "ETA" in lines[0]
            assert result.stdout.startswith("blobs: ") and BAR.search(result.stdout) is None
        else:
            screen = in_pty(*args, workdir=tmp_path)
            assert BAR.search(screen) and "\x1b[" in screen, screen[-2000:]   # drawn, with escape codes
            assert re.search(r"\d+(\.\d)?/\d+(\.\d)? MB", screen) and "MB/s" in screen and "ETA" in screen, screen
            assert not PLAIN.search(screen)
        assert len(blob_files(target / "blobstore")) == len(blob_files(root / "old"))


def test_retention_and_gc_runs_show_progress_piped_and_on_a_terminal(registry, tmp_path):
    _, config = registry
    # Dry runs first (they change nothing), on a terminal and piped; then the real runs, piped.
    screen = in_pty("retention", "run", "--dry-run", "--config", str(config), workdir=tmp_path)
    assert BAR.search(screen) and "verdicts" in screen and "ETA" in screen, screen[-2000:]
    dry = piped("retention", "run", "--dry-run", "--json", "--config", str(config))
    assert json.loads(dry.stdout)["counts"]["deleted"] == 2     # stdout stays JSON
    assert plain_lines(dry.stderr, "retention dry run")[-1].startswith("retention dry run: 100% (3 of 3 verdicts)")
    run = piped("retention", "run", "--config", str(config))
    assert plain_lines(run.stderr, "retention")[-1].startswith("retention: 100% (3 of 3 verdicts)")
    assert "deleted 2" in run.stdout

    screen = in_pty("gc", "run", "--dry-run", "--grace-seconds", "0", "--config", str(config), workdir=tmp_path)
    assert BAR.search(screen) and "reviews" in screen and "freed" in screen, screen[-2000:]
    gc = piped("gc", "run", "--json", "--grace-seconds", "0", "--config", str(config))
    report = json.loads(gc.stdout)
    assert report["counts"]["blobs_deleted"] > 0
    last = plain_lines(gc.stderr, "gc")[-1]
    reviewed = report["counts"]["manifests_reviewed"] + report["counts"]["blobs_reviewed"]
    assert last.startswith(f"gc: 100% ({reviewed} of {reviewed} reviews, ") and " freed)" in last, last
    assert "0 B freed" not in last
    # What is left is served as before.
    with DaoHubProcess(config.parent / "old", config=config) as hub:
        r = requests.get(f"{hub.url}/v2/team/app/manifests/3", headers={"Accept": OCI_MANIFEST}, timeout=30)
        assert r.status_code == 200
        assert requests.get(f"{hub.url}/v2/team/app/tags/list", timeout=30).json()["tags"] == ["3"]
