"""Reading the files under deploy/ the way their tools do, for the tests that keep them honest.

Compose interpolation covers the forms the compose file uses (`${VAR}`, `${VAR:-default}`,
`${VAR-default}`, `${VAR:?error}`, `${VAR?error}`, `$VAR`, `$$`); env files are `KEY=VALUE`
lines; systemd units are `[Section]` and `Key=Value` lines.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping
from pathlib import Path

import yaml

from hub.config import Config, load_config
from tests.helpers.server import REPO_ROOT

DEPLOY = REPO_ROOT / "deploy"
COMPOSE_DIR = DEPLOY / "compose"
K8S_DIR = DEPLOY / "k8s"
SYSTEMD_DIR = DEPLOY / "systemd"
DOCKERFILE = DEPLOY / "Dockerfile"


class InterpolationError(ValueError):
    pass


_VAR = re.compile(r"\$\$|\$\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
                  r"|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)")


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Compose's variable interpolation of one string (keys are never interpolated)."""
    def substitute(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group("braced") or match.group("bare")
        op, arg = match.group("op"), match.group("arg") or ""
        value = env.get(name)
        unset_or_empty = not value
        missing = unset_or_empty if op and op.startswith(":") else value is None
        if op in (":-", "-"):
            return arg if missing else value
        if op in (":?", "?"):
            if missing:
                raise InterpolationError(f"required variable {name} is missing: {arg}")
            return value
        if op in (":+", "+"):
            return "" if missing else arg
        return value or ""

    return _VAR.sub(substitute, text)


def interpolate_tree(node, env: Mapping[str, str]):
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [interpolate_tree(item, env) for item in node]
    if isinstance(node, dict):
        return {key: interpolate_tree(value, env) for key, value in node.items()}
    return node


def required_variables(text: str) -> set[str]:
    """Variables the text requires with `${VAR:?...}` or `${VAR?...}`."""
    return {m.group("braced") for m in _VAR.finditer(text) if (m.group("op") or "").endswith("?")}


def read_env_file(path: Path) -> dict[str, str]:
    """`KEY=VALUE` lines; blank lines and `#` comments skipped (as compose and kustomize read them)."""
    env = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise ValueError(f"{path}:{number}: not KEY=VALUE: {line!r}")
        env[key] = value
    return env


def compose_file() -> dict:
    return yaml.safe_load((COMPOSE_DIR / "compose.yaml").read_text())


def compose_environment(service: dict) -> dict[str, str]:
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    return {key: "" if value is None else str(value) for key, value in environment.items()}


def k8s_documents() -> dict[str, dict]:
    """Every manifest listed in kustomization.yaml, by `Kind/name`."""
    docs = {}
    for resource in kustomization()["resources"]:
        for doc in yaml.safe_load_all((K8S_DIR / resource).read_text()):
            if doc:
                docs[f"{doc['kind']}/{doc['metadata']['name']}"] = doc
    return docs


def kustomization() -> dict:
    return yaml.safe_load((K8S_DIR / "kustomization.yaml").read_text())


def pod_containers(doc: dict) -> list[dict]:
    return doc["spec"]["template"]["spec"]["containers"]


def read_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """A systemd unit as {section: {key: [values in order]}}."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, _, value = line.partition("=")
        assert current is not None, f"{path}: {line!r} outside a section"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def systemd_seconds(value: str) -> float:
    """`75s`, `1min 30s`, `90` (seconds) as seconds."""
    units = {"ms": 0.001, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "": 1}
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", value):
        total += float(number) * units[unit]
    return total


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined."""
    instructions = []
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            instructions.append((word.upper(), rest.strip()))
    return instructions


def daohub_commands() -> dict[str, list[str]]:
    """Every `daohub ...` command line in deploy/, by where it is."""
    commands: dict[str, list[str]] = {}
    for word, rest in dockerfile_instructions():
        if word == "CMD":
            commands["Dockerfile CMD"] = json.loads(rest)
    for name, service in compose_file()["services"].items():
        if isinstance(service.get("command"), list) and service["command"][:1] == ["daohub"]:
            commands[f"compose {name}"] = service["command"]
    for key, doc in k8s_documents().items():
        if doc["kind"] in ("Deployment", "Job"):
            for container in pod_containers(doc):
                commands[f"k8s {key} {container['name']}"] = container["command"] + container.get("args", [])
    for unit in sorted(SYSTEMD_DIR.glob("*.service")):
        for line in read_unit(unit)["Service"].get("ExecStart", []):
            commands[f"systemd {unit.name}"] = shlex.split(line)
    return commands


def _daohub_env(env: dict[str, str]) -> dict[str, str]:
    # The config loader rejects unknown DAOHUB_* names, so pass every one the form sets.
    return {key: value for key, value in env.items() if key.startswith("DAOHUB_")}


def compose_hub_env() -> dict[str, str]:
    """The hub container's environment, interpolated with the values of .env.example."""
    service = interpolate_tree(compose_file()["services"]["hub"], read_env_file(COMPOSE_DIR / ".env.example"))
    return compose_environment(service)


def k8s_hub_env() -> dict[str, str]:
    """The Deployment's env entries plus the Secret generated from secrets.env.example."""
    container = pod_containers(k8s_documents()["Deployment/daohub"])[0]
    env = {item["name"]: item["value"] for item in container.get("env", [])}
    env.update(read_env_file(K8S_DIR / "secrets.env.example"))
    return env


def systemd_env() -> dict[str, str]:
    return {"DAOHUB_ADMIN_PASSWORD": "placeholder"}  # what /etc/daohub/daohub.env may hold


# Each config file under deploy/, with the environment its deployment form runs it in.
CONFIG_FILES = {
    "compose/config.yaml": compose_hub_env,
    "k8s/config.yaml": k8s_hub_env,
    "systemd/config.yaml": systemd_env,
}


def deploy_env(relative: str) -> dict[str, str]:
    """The DAOHUB_* variables the form of config file `relative` runs it with."""
    env = _daohub_env(CONFIG_FILES[relative]())
    # The forms name the file through DAOHUB_CONFIG or --config; here it is the checkout's copy.
    env.pop("DAOHUB_CONFIG", None)
    return env


def load_deploy_config(relative: str, **overrides) -> Config:
    return load_config(DEPLOY / relative, environ=deploy_env(relative), overrides=overrides or None)
