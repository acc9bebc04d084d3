"""`daohub transfer` end to end, as an operator runs it: a `daohub serve` on the embedded default
takes pushes and stops; `python -m hub transfer --config old.yaml --to-config new.yaml` moves
its blobs (filesystem to filesystem) and metadata (SQLite to PostgreSQL); a `daohub serve` on
the new config then serves everything and takes new pushes. A second run is refused."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import requests

from hub import cli
from tests.helpers.server import REPO_ROOT, DaoHubProcess, blob_files

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def push_image(url: str, name: str, tag: str, layer_sizes=(1 << 20, 3000)) -> tuple[str, list[bytes]]:
    blobs = [json.dumps({"tag": tag}).encode()] + [os.urandom(n) for n in layer_sizes]
    for data in blobs:
        r = requests.post(f"{url}/v2/{name}/blobs/uploads/?digest={sha256(data)}", data=data, timeout=30)
        assert r.status_code == 201, r.text
    descriptors = [{"mediaType": "application/octet-stream", "digest": sha256(b), "size": len(b)} for b in blobs]
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": {**descriptors[0], "mediaType": "application/vnd.oci.image.config.v1+json"},
                "layers": descriptors[1:]}
    r = requests.put(f"{url}/v2/{name}/manifests/{tag}", data=json.dumps(manifest).encode(),
                     headers={"Content-Type": OCI_MANIFEST}, timeout=30)
    assert r.status_code == 201, r.text
    return r.headers["Docker-Content-Digest"], blobs


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAOHUB_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-m", "hub", *args], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=300, check=False)


def test_transfer_command_moves_a_registry_to_postgres(tmp_path: Path, postgres_url: str):
    old_dir, new_dir = tmp_path / "old", tmp_path / "new"
    old_yaml, new_yaml, secrets = tmp_path / "old.yaml", tmp_path / "new.yaml", tmp_path / "secrets.env"
    old_yaml.write_text(f"data_dir: {old_dir}\nlog:\n  access_log: false\n")
    # The target's secrets come from an env file, as deploy/k8s/secrets.env holds them.
    new_yaml.write_text(f"data_dir: {new_dir}\nstorage:\n  root: {new_dir / 'blobstore'}\n"
                        "database:\n  pool_min_size: 1\nlog:\n  access_log: false\n")
    secrets.write_text(f"# the new stack's secrets\nDAOHUB_DATABASE_URL={postgres_url}\n")

    with DaoHubProcess(old_dir, config=old_yaml) as old:
        pushed = {tag: push_image(old.url, name, tag) for name, tag in (("team/app", "v1"), ("team/app", "v2"))}
        pushed["1"] = push_image(old.url, "team/tool", "1", layer_sizes=(10,))
        before = {path: requests.get(old.url + path, timeout=30).json()
                  for path in ("/v2/_catalog", "/v2/team/app/tags/list", "/v2/team/tool/tags/list")}
    copied = len(blob_files(old_dir))

    result = run_cli("transfer", "--config", str(old_yaml), "--to-config", str(new_yaml),
                     "--to-env-file", str(secrets), "--jobs", "3")

    assert result.returncode == 0, result.stderr
    assert f"blobs: {copied} copied" in result.stdout
    assert "repositories 2" in result.stdout and "manifests 3" in result.stdout
    assert postgres_url not in result.stdout + result.stderr
    assert len(blob_files(new_dir / "blobstore")) == copied

    new = DaoHubProcess(new_dir, config=new_yaml, env={"DAOHUB_DATABASE_URL": postgres_url})
    with new:
        assert {path: requests.get(new.url + path, timeout=30).json() for path in before} == before
        for tag, (digest, blobs) in pushed.items():
            name = "team/tool" if tag == "1" else "team/app"
            r = requests.get(f"{new.url}/v2/{name}/manifests/{tag}", headers={"Accept": OCI_MANIFEST}, timeout=30)
            assert r.status_code == 200 and r.headers["Docker-Content-Digest"] == digest
            for data in blobs:
                r = requests.get(f"{new.url}/v2/{name}/blobs/{sha256(data)}", timeout=30)
                assert r.status_code == 200 and r.content == data
        # New pushes land in the new stack: a new repository, a new tag on an old one.
        push_image(new.url, "team/fresh", "1", layer_sizes=(100,))
        push_image(new.url, "team/app", "v3", layer_sizes=(100,))
        catalog = requests.get(new.url + "/v2/_catalog", timeout=30).json()
        assert catalog["repositories"] == ["team/app", "team/fresh", "team/tool"]
        r = requests.get(new.url + "/readyz", timeout=30)
        assert r.status_code == 200

        # Running it again would merge two registries: refused, nothing changed.
        again = run_cli("transfer", "--config", str(old_yaml), "--to-config", str(new_yaml),
                        "--to-env-file", str(secrets))
        assert again.returncode == 1
        assert "transfer failed" in again.stderr and "not empty" in again.stderr
        assert "Traceback" not in again.stderr
        assert requests.get(new.url + "/v2/_catalog", timeout=30).json() == catalog


def test_transfer_command_reports_configuration_errors(tmp_path: Path, capsys, monkeypatch):
    for name in [k for k in os.environ if k.startswith("DAOHUB_")]:
        monkeypatch.delenv(name)
    # cli.main sets up logging on the root logger: give it a list and level to spoil and restore.
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", list(root.handlers))
    monkeypatch.setattr(root, "level", root.level)
    old_yaml = tmp_path / "old.yaml"
    old_yaml.write_text(f"data_dir: {tmp_path / 'old'}\n")
    bad_env = tmp_path / "secrets.env"
    bad_env.write_text("DAOHUB_DATABASE_URL postgresql://user:hunter2@db/daohub\n")
    new_yaml = tmp_path / "new.yaml"
    new_yaml.write_text("database:\n  url: sqlite:///elsewhere.db\n")
    transfer = ["transfer", "--config", str(old_yaml), "--to-config", str(new_yaml)]

    assert cli.main([*transfer, "--to-env-file", str(bad_env)]) == 2
    err = capsys.readouterr().err
    assert f"{bad_env}:1: expected KEY=VALUE" in err and "hunter2" not in err

    assert cli.main([*transfer, "--to-env-file", str(tmp_path / "missing.env")]) == 2
    assert "cannot read env file" in capsys.readouterr().err

    assert cli.main(transfer) == 1
    assert "database.url must be a PostgreSQL URL" in capsys.readouterr().err

    assert cli.main([*transfer, "--jobs", "0"]) == 2


def readme_commands() -> list[list[str]]:
    """The `daohub ...` command lines of deploy/README.md's "Moving from the embedded default"."""
    text = (REPO_ROOT / "deploy" / "README.md").read_text()
    section = text.split("## Moving from the embedded default", 1)[1].split("\n## ", 1)[0]
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", section, re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            for part in re.split(r"[;()]", line.split("#", 1)[0]):
                words = shlex.split(part)
                starts = [i for i, w in enumerate(words[:-1]) if w == "daohub" and words[i + 1][:1].isalpha()
                          and words[i + 1] != "daohub"]
                if starts:
                    commands.append(words[starts[0]:])
    return commands


def test_the_readme_commands_are_real(tmp_path: Path, capsys):
    commands = readme_commands()
    assert [c[1] for c in commands] == ["migrate", "transfer", "transfer"]
    assert "--skip-metadata" in commands[1] and "--to-env-file" in commands[2]
    for argv in commands:
        # Every flag parses (argparse exits on an unknown one before this point); the files
        # do not exist here, which is the error that comes next.
        argv = [a.replace("/etc/daohub/", f"{tmp_path}/") for a in argv]
        assert cli.main(argv[1:]) == 2, argv
        assert "cannot read config file" in capsys.readouterr().err
