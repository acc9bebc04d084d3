"""README.md's "Configuration for production": every YAML block there loads through the real
config loader and builds its storage driver, and every production key of the storage and
database sections is mentioned, so the reference cannot drift from hub/config.py."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

import storage_backends
from hub.config import LEGACY_STORAGE_KEYS, DatabaseConfig, load_config

README = Path(__file__).resolve().parents[2] / "README.md"
SECRETS = {f"DAOHUB_STORAGE_{driver}_{key}": "placeholder"
           for driver in ("S3", "OSS") for key in ("ACCESS_KEY", "SECRET_KEY")}


def section() -> str:
    text = README.read_text()
    return text.split("## Configuration for production", 1)[1].split("\n## ", 1)[0]


def yaml_blocks() -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", section(), re.DOTALL)


def test_the_section_shows_every_driver():
    drivers = {re.search(r"^\s+driver:\s*(\S+)", block, re.MULTILINE).group(1) for block in yaml_blocks()}
    assert drivers == {"s3", "oss", "nfs"}


@pytest.mark.parametrize("number", range(len(yaml_blocks())))
async def test_block_loads_and_builds_its_driver(number, tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(yaml_blocks()[number])
    config = load_config(path, environ=SECRETS)
    # Construction checks the options and does no I/O (no server is needed here).
    driver = storage_backends.create(config.storage.driver, config.storage_params())
    await driver.aclose()


@pytest.mark.parametrize("prefix, keys", [
    # Every storage key of the flat form (the section reference, or its migration note, names each).
    ("storage", ["driver", *(key for key in LEGACY_STORAGE_KEYS if key != "root")]),
    ("database", [f.name for f in dataclasses.fields(DatabaseConfig) if f.name != "sqlite_synchronous"]),
])
def test_every_key_is_documented(prefix, keys):
    text = section()
    missing = [k for k in keys if not re.search(rf"(^\s+|`{prefix}\.|`){k}\b", text, re.MULTILINE)]
    assert not missing, f"{prefix} keys not in README's production section: {missing}"
