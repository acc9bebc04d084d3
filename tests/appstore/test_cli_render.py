"""`daohub app render` as a subprocess."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import appstore
from appstore import yamlsafe

SEEDS = Path(appstore.__file__).parent / "seeds"
ROOT = Path(appstore.__file__).parent.parent


def daohub(*args: str, cwd=None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAOHUB_")}
    return subprocess.run([sys.executable, "-m", "hub", "app", *args], capture_output=True, text=True,
                          cwd=cwd or ROOT, env=env, timeout=120, check=False)


def test_render_defaults_to_stdout():
    proc = daohub("render", str(SEEDS / "redis"))
    assert proc.returncode == 0, proc.stderr
    doc = yamlsafe.load(proc.stdout)
    assert doc["services"]["redis"]["image"] == "redis:7.2-alpine"
    assert "generated secrets for REDIS_PASSWORD" in proc.stderr
    assert doc["services"]["redis"]["command"][2] not in proc.stderr  # the secret itself is not on stderr


def test_render_with_set_values_file_version_and_output(tmp_path):
    values = tmp_path / "values.yaml"
    values.write_text("HTTP_PORT: 9000\nNGINX_VERSION: '1.24'\n")
    out = tmp_path / "out.yaml"
    proc = daohub("render", str(SEEDS / "nginx"), "--version", "1.0.0", "--values", str(values),
                  "--set", "HTTP_PORT=9001", "-o", str(out), "--project-name", "site")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    doc = yamlsafe.load(out.read_text())
    assert doc == {"name": "site", "services": {"web": {"image": "nginx:1.24", "ports": ["9001:80"]}}}
    assert stat.S_IMODE(out.stat().st_mode) == 0o600


def test_bad_values_exit_2_with_field_errors():
    proc = daohub("render", str(SEEDS / "wordpress"), "--set", "HTTP_PORT=80", "--set", "SCALE=many",
                  "--set", "NOPE=1", "--set", "broken")
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "daohub: broken: expected NAME=VALUE" in proc.stderr
    proc = daohub("render", str(SEEDS / "wordpress"), "--set", "HTTP_PORT=80", "--set", "SCALE=many",
                  "--set", "NOPE=1")
    assert proc.returncode == 2
    lines = proc.stderr.splitlines()
    assert "daohub: NOPE: unknown parameter" in lines
    assert "daohub: HTTP_PORT: must be at least 1024" in lines
    assert "daohub: SCALE: must be an integer" in lines
    assert "Traceback" not in proc.stderr


def test_unknown_version_and_bad_source(tmp_path):
    proc = daohub("render", str(SEEDS / "nginx"), "--version", "9.9.9")
    assert proc.returncode == 2 and "has no version 9.9.9" in proc.stderr
    (tmp_path / "app.yaml").write_text("title: X\nicon: ../../etc/passwd.png\n")
    proc = daohub("render", str(tmp_path))
    assert proc.returncode == 2 and "icon" in proc.stderr and "Traceback" not in proc.stderr


def test_render_from_a_metadata_file(tmp_path):
    doc = {"schemaVersion": 1, "app": {"key": "one", "title": "One"},
           "version": {"version": "0.1.0", "composeFiles": ["compose.yaml"],
                       "parameters": [{"name": "TAG", "type": "enum", "options": ["a", "b"], "default": "a"}]}}
    (tmp_path / "meta.json").write_text(json.dumps(doc))
    (tmp_path / "compose.yaml").write_text("services:\n  x:\n    image: busybox:${TAG}\n")
    proc = daohub("render", str(tmp_path / "meta.json"), "--set", "TAG=b")
    assert proc.returncode == 0, proc.stderr
    assert yamlsafe.load(proc.stdout)["services"]["x"]["image"] == "busybox:b"


def test_values_file_must_be_a_mapping(tmp_path):
    values = tmp_path / "v.yaml"
    values.write_text("- a\n")
    proc = daohub("render", str(SEEDS / "redis"), "--values", str(values))
    assert proc.returncode == 2 and "--values" in proc.stderr
    proc = daohub("render", str(SEEDS / "redis"), "--values", str(tmp_path / "missing.yaml"))
    assert proc.returncode == 2 and "cannot read" in proc.stderr


def test_render_ignores_a_broken_daohub_environment():
    env = dict(os.environ, DAOHUB_NO_SUCH_KEY="1")
    proc = subprocess.run([sys.executable, "-m", "hub", "app", "render", str(SEEDS / "nginx")], capture_output=True,
                          text=True, cwd=ROOT, env=env, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr


def test_app_group_help_lists_render():
    proc = daohub("--help")
    assert proc.returncode == 0 and "render" in proc.stdout
