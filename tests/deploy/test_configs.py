"""What every deployment form shares: its config files load through hub.config with the
environment the form gives them, its `daohub` command lines are real CLI commands, its probe
paths are served by the app, and the image builds what pyproject.toml installs."""

from __future__ import annotations

import json
import re
import tomllib

import pytest
import yaml

import storage_backends
from hub import cli
from hub.app import create_app
from hub.config import LEGACY_STORAGE_KEYS, load_config

from .files import (
    CONFIG_FILES,
    DEPLOY,
    SYSTEMD_DIR,
    compose_file,
    compose_hub_env,
    daohub_commands,
    deploy_env,
    dockerfile_instructions,
    k8s_documents,
    k8s_hub_env,
    load_deploy_config,
    pod_containers,
    read_unit,
)


# (driver, key in storage.<driver>) -> its flat name of the old form, where it differs.
LEGACY_NAMES = {(drivers[0], key): flat for flat, (drivers, key) in LEGACY_STORAGE_KEYS.items() if flat != key}


def test_every_config_file_under_deploy_is_checked():
    found = {str(p.relative_to(DEPLOY)) for p in DEPLOY.rglob("config*.yaml")}
    assert found == set(CONFIG_FILES)


@pytest.mark.parametrize("relative", sorted(CONFIG_FILES))
def test_config_loads_with_its_environment(relative):
    config = load_deploy_config(relative)
    assert config.auth.enabled, "deployments keep auth on"
    assert config.server.shutdown_timeout > 0


def test_replica_configs_use_shared_stores():
    for relative in ("compose/config.yaml", "k8s/config.yaml"):
        config = load_deploy_config(relative)
        assert config.database_url.startswith("postgresql://"), relative
        assert config.storage.driver in ("s3", "oss"), relative
        params = config.storage_params()
        assert params.bucket, relative
        # Secrets come from the environment, never from the file.
        text = (DEPLOY / relative).read_text()
        assert not re.search(r"^\s*(secret_key|access_key|session_token|url)\s*:", text, re.MULTILINE), relative
        assert params.secret_key.reveal() and params.access_key, relative
        assert not config.storage.legacy(), f"{relative} uses the flat storage keys of the old form"


@pytest.mark.parametrize("relative", sorted(CONFIG_FILES))
def test_the_flat_storage_form_of_each_config_still_loads_the_same(relative, tmp_path, caplog):
    """Deployments written before the driver sections (storage.bucket, DAOHUB_STORAGE_ACCESS_KEY)
    keep working: the same file with its driver's section flattened loads the same params."""
    new = load_deploy_config(relative)
    data = yaml.safe_load((DEPLOY / relative).read_text())
    driver = data["storage"]["driver"]
    section = data["storage"].pop(driver)
    data["storage"].update({LEGACY_NAMES.get((driver, key), key): value for key, value in section.items()})
    path = tmp_path / "flat.yaml"
    path.write_text(yaml.safe_dump(data))
    env = {key.replace(f"DAOHUB_STORAGE_{driver.upper()}_", "DAOHUB_STORAGE_"): value
           for key, value in deploy_env(relative).items()}
    with caplog.at_level("WARNING", logger="daohub.config"):
        old = load_config(path, environ=env)
    assert old.storage_params() == new.storage_params()
    warnings = [r.getMessage() for r in caplog.records if r.name == "daohub.config"]
    assert len(warnings) == 1 and "deprecated" in warnings[0], warnings
    assert old.storage.legacy()


def test_config_files_point_where_the_forms_mount_them():
    compose_env = compose_hub_env()
    mounts = compose_file()["services"]["hub"]["volumes"]
    assert f"./config.yaml:{compose_env['DAOHUB_CONFIG']}:ro" in mounts
    deployment = k8s_documents()["Deployment/daohub"]
    container = pod_containers(deployment)[0]
    config_mount = next(m for m in container["volumeMounts"] if m["name"] == "config")
    assert k8s_hub_env()["DAOHUB_CONFIG"] == config_mount["mountPath"] + "/config.yaml"
    assert config_mount.get("readOnly") is True
    exec_start = read_unit(SYSTEMD_DIR / "daohub.service")["Service"]["ExecStart"][0]
    assert "--config /etc/daohub/config.yaml" in exec_start


@pytest.mark.parametrize("where", sorted(daohub_commands()))
def test_daohub_command_lines_are_real_cli_commands(where, tmp_path, capsys):
    argv = daohub_commands()[where]
    assert argv[0].rsplit("/", 1)[-1] == "daohub", argv
    # Parse with the real CLI, stopping at the config error of a missing file: argparse
    # rejects an unknown command or flag with SystemExit(2) before that point.
    code = cli.main(argv[1:] + ["--config", str(tmp_path / "missing.yaml")])
    assert code == 2
    assert "cannot read config file" in capsys.readouterr().err


def test_console_script_is_the_cli_entry_point():
    project = tomllib.loads((DEPLOY.parent / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["daohub"] == "hub.cli:main"


def probe_paths() -> dict[str, str]:
    """Every HTTP path a health check or probe in deploy/ asks for, by where it is."""
    paths = {}
    for name, service in compose_file()["services"].items():
        test = " ".join((service.get("healthcheck") or {}).get("test", []))
        for path in re.findall(r"http://127\.0\.0\.1:\d+(/[^'\" ]*)", test):
            paths[f"compose {name} healthcheck"] = path
    for key, doc in k8s_documents().items():
        if doc["kind"] == "Deployment":
            for container in pod_containers(doc):
                for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                    if probe in container:
                        paths[f"k8s {key} {probe}"] = container[probe]["httpGet"]["path"]
    return paths


def test_probes_exist_where_expected():
    paths = probe_paths()
    assert paths["k8s Deployment/daohub readinessProbe"] == "/readyz"
    assert paths["k8s Deployment/daohub livenessProbe"] == "/healthz"
    assert paths["compose hub healthcheck"] == "/readyz"


@pytest.fixture
async def deployed_app_client(aiohttp_client, tmp_path, monkeypatch):
    """The app as the Kubernetes config builds it (auth on), on local stores in place of the
    PostgreSQL and bucket this machine does not have."""
    monkeypatch.setenv("DAOHUB_ADMIN_PASSWORD", "probe-test-password")
    config = load_deploy_config(
        "k8s/config.yaml",
        data_dir=str(tmp_path),
        storage={"driver": "filesystem", "root": str(tmp_path / "storage")},
        database={"url": f"sqlite:///{tmp_path / 'daohub.db'}"},
        auth={"password_memory_kib": 64, "password_time_cost": 1},
        log={"access_log": False},
    )
    return await aiohttp_client(create_app(config))


async def test_probe_paths_answer_200_without_credentials(deployed_app_client):
    # Probes carry no token: a probe path behind auth would take every replica out of service.
    for where, path in sorted(probe_paths().items()):
        response = await deployed_app_client.get(path)
        assert response.status == 200, (where, path, response.status, await response.text())


# --- the image ---------------------------------------------------------------------------------

def test_dockerfile_builds_on_python_slim_as_a_non_root_user():
    instructions = dockerfile_instructions()
    bases = [rest.split()[0] for word, rest in instructions if word == "FROM"]
    assert bases and all(base == "python:3.11-slim" for base in bases), bases
    users = [rest for word, rest in instructions if word == "USER"]
    assert users, "no USER: the image would run as root"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, "numeric non-root UID (Kubernetes checks runAsNonRoot by number)"
    assert any(word == "RUN" and re.search(r"pip install \.(\s|$)", rest) for word, rest in instructions)
    cmd = json.loads(next(rest for word, rest in instructions if word == "CMD"))
    assert cmd == ["daohub", "serve", "--addr", "0.0.0.0:5000"]
    # The Deployment and the compose file run the image's user; they must agree with it.
    pod_security = k8s_documents()["Deployment/daohub"]["spec"]["template"]["spec"]["securityContext"]
    assert str(pod_security["runAsUser"]) == uid


def test_dockerfile_copies_everything_pip_install_needs():
    pyproject = tomllib.loads((DEPLOY.parent / "pyproject.toml").read_text())
    copied = set()
    for word, rest in dockerfile_instructions():
        if word == "COPY" and not rest.startswith("--from"):
            copied.update(p.rstrip("/") for p in rest.split()[:-1])
    needed = {"pyproject.toml", pyproject["project"]["readme"]}
    for pattern in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]:
        needed.add(pattern.rstrip("*"))
    assert needed <= copied, f"not copied into the image: {needed - copied}"
    ignored = (DEPLOY / "Dockerfile.dockerignore").read_text().split()
    assert not needed & set(ignored), "the build context ignores something the build copies"


# --- the README's config blocks and the storage drivers the configs name -----------------------

def readme_config_blocks() -> list[str]:
    text = (DEPLOY / "README.md").read_text()
    return re.findall(r"```yaml\n(.*?)```", text, re.DOTALL)


def test_readme_has_the_object_storage_examples():
    drivers = {yaml_block_driver(block) for block in readme_config_blocks()}
    assert {"s3", "oss"} <= drivers


def yaml_block_driver(block: str) -> str:
    match = re.search(r"^\s+driver:\s*(\S+)", block, re.MULTILINE)
    return match.group(1) if match else ""


STORAGE_SECRETS = {f"DAOHUB_STORAGE_{driver}_{key}": "placeholder"
                   for driver in ("S3", "OSS") for key in ("ACCESS_KEY", "SECRET_KEY")}


def _configs_naming_storage(tmp_path) -> dict[str, object]:
    configs = {relative: load_deploy_config(relative) for relative in CONFIG_FILES}
    for number, block in enumerate(readme_config_blocks(), 1):
        path = tmp_path / f"readme-{number}.yaml"
        path.write_text(block)
        configs[f"README block {number}"] = load_config(path, environ=STORAGE_SECRETS)
    return configs


async def test_every_storage_section_builds_its_driver(tmp_path):
    for where, config in _configs_naming_storage(tmp_path).items():
        assert config.storage.driver in storage_backends.available(), where
        assert not config.storage.legacy(), f"{where} uses the flat storage keys of the old form"
        options = config.storage_settings()
        if config.storage.driver == "filesystem":
            options["root"] = str(tmp_path / "storage")  # not /var/lib/daohub on this machine
        # Constructing a driver checks its options and does no I/O.
        driver = storage_backends.create(config.storage.driver, options)
        await driver.aclose()
