"""Storage settings are defined once per driver (docs/design/metadata-split.md §6): the params
dataclass of each driver (FilesystemParams, NfsParams, S3Params, OssParams) gives the keys of
`storage.<driver>` and of DAOHUB_STORAGE_<DRIVER>_<KEY>; an unknown key or a wrong type is an
error; the flat keys of the old form (LEGACY_STORAGE_KEYS) still work with one warning per load,
and are an error for a driver that lacks them. Nothing here does I/O."""

from __future__ import annotations

import dataclasses
import typing

import pytest
import yaml

import storage_backends
from hub.config import LEGACY_STORAGE_KEYS, ConfigError, Secret, load_config
from storage_backends.filesystem import FilesystemParams

MiB = 1024 * 1024
DRIVERS = ["filesystem", "memory", "nfs", "oss", "s3"]

# A valid section for each driver (the secrets as a deployment would give them).
BASE = {
    "filesystem": {},  # root defaults to <data_dir>/storage
    "memory": {},
    "nfs": {"url": "nfs://nfs.example/export/daohub"},
    "s3": {"bucket": "b", "access_key": "AKIA1", "secret_key": "base-secret-key"},
    "oss": {"bucket": "b", "endpoint": "https://oss-cn-hangzhou.aliyuncs.com", "region": "cn-hangzhou",
            "access_key": "LTAI1", "secret_key": "base-secret-key"},
}

# A valid value, other than the default, for every string setting.
STRINGS = {
    "root": "/srv/elsewhere", "url": "nfs://other.example/export/y?nfsport=2049", "bucket": "other",
    "region": "eu-west-9", "endpoint": "https://s3.example.net", "internal_endpoint": "https://in.example.net",
    "access_key": "AKIA2", "secret_key": "s2", "session_token": "token", "addressing_style": "path",
    "prefix": "some/prefix",
}


def fields(driver: str) -> dict[str, tuple[type, typing.Any]]:
    kind = storage_backends.params_type(driver)
    hints = typing.get_type_hints(kind)
    return {f.name: (hints[f.name], f.default) for f in dataclasses.fields(kind)}


def other_value(key: str, typ: type, default: typing.Any) -> typing.Any:
    """A valid value of setting `key` that is not its default."""
    if typ in (str, Secret):
        return STRINGS[key]
    if typ is bool:
        return not default
    if typ is int:
        return default - 1 if default > 1 else default + 1
    return default / 2


def as_variable(value: typing.Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def load(tmp_path, data: dict, environ: dict[str, str] | None = None, name: str = "config.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump({"data_dir": str(tmp_path), "storage": data}, sort_keys=False))
    return load_config(path, environ=environ or {})


def deprecations(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "daohub.config" and "deprecated" in r.getMessage()]


# --- the new form ---------------------------------------------------------------------------

@pytest.mark.parametrize("driver", DRIVERS)
def test_every_setting_of_every_driver_is_a_key_and_a_variable(driver, tmp_path, caplog):
    settings = {key: other_value(key, typ, default) for key, (typ, default) in fields(driver).items()}
    for key, value in settings.items():
        from_file = load(tmp_path, {"driver": driver, driver: {**BASE[driver], key: value}})
        variable = f"DAOHUB_STORAGE_{driver.upper()}_{key.upper()}"
        from_env = load(tmp_path, {"driver": driver, driver: BASE[driver]}, {variable: as_variable(value)})
        for config in (from_file, from_env):
            assert getattr(config.storage_params(), key) == value, (key, variable)
            assert not config.storage.legacy()
    assert not deprecations(caplog)


def test_the_params_are_the_drivers_own():
    assert {d: storage_backends.params_type(d).__name__ for d in DRIVERS} == {
        "filesystem": "FilesystemParams", "memory": "NoParams", "nfs": "NfsParams", "oss": "OssParams",
        "s3": "S3Params"}
    # The S3 knobs that had no config key before are keys now.
    assert {"multipart_copy_threshold", "multipart_copy_part_size", "copy_concurrency", "upload_concurrency",
            "retry_base_delay", "retry_max_delay", "connect_timeout", "read_timeout", "max_connections",
            "list_page_size", "delete_batch_size"} <= set(fields("s3"))
    assert set(fields("oss")) == set(fields("s3"))


def test_a_secret_stays_hidden(tmp_path):
    config = load(tmp_path, {"driver": "s3", "s3": BASE["s3"]}, {"DAOHUB_STORAGE_SECRET_KEY": "flat-secret"})
    params = config.storage_params()
    assert isinstance(params.secret_key, Secret) and params.secret_key.reveal() == "flat-secret"
    for text in (repr(config), repr(params), repr(config.storage_settings())):
        assert "base-secret-key" not in text and "flat-secret" not in text


def test_create_takes_the_params_object_or_a_mapping(tmp_path):
    params = FilesystemParams(root=str(tmp_path / "a"))
    assert storage_backends.create("filesystem", params).inner.root == (tmp_path / "a").resolve()
    assert storage_backends.create("filesystem", {"root": str(tmp_path / "b")}).inner.root == (tmp_path / "b")
    with pytest.raises(TypeError):
        storage_backends.create("filesystem", params, root=str(tmp_path))


# --- unknown keys and wrong types -----------------------------------------------------------

@pytest.mark.parametrize("driver", DRIVERS)
def test_each_driver_refuses_an_unknown_key(driver, tmp_path):
    allowed = ", ".join(fields(driver)) or "none"
    with pytest.raises(ValueError) as caught:
        storage_backends.create(driver, {**BASE[driver], "bucketname": "x"})
    assert str(caught.value).startswith(f"storage.{driver}: unknown setting 'bucketname'")
    assert str(caught.value).endswith(f"allowed: {allowed}")
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, {"driver": driver, driver: {**BASE[driver], "bucketname": "x"}})
    assert f"storage.{driver}.bucketname: unknown setting 'bucketname'" in str(caught.value)
    assert str(caught.value).endswith(f"allowed: {allowed}")
    variable = f"DAOHUB_STORAGE_{driver.upper()}_BUCKETNAME"
    with pytest.raises(ConfigError, match=f"^{variable}: unknown setting 'bucketname' .*allowed: "):
        load(tmp_path, {"driver": driver, driver: BASE[driver]}, {variable: "x"})


def test_a_close_miss_is_named():
    with pytest.raises(ValueError, match=r"unknown setting 'buckets' \(did you mean 'bucket'\?\)"):
        storage_backends.create("s3", bucket="b", buckets="c")


def test_the_section_of_a_driver_not_chosen_is_checked_too(tmp_path):
    with pytest.raises(ConfigError, match=r"storage\.s3\.bukket: unknown setting"):
        load(tmp_path, {"driver": "filesystem", "s3": {"bukket": "b"}})
    with pytest.raises(ConfigError, match=r"storage\.nfs: expected a mapping"):
        load(tmp_path, {"driver": "filesystem", "nfs": "nfs://x/y"})
    # ...but only the chosen one is used: a filesystem config may carry an s3 section.
    config = load(tmp_path, {"driver": "filesystem", "s3": {"bucket": "b"}})
    assert config.storage_params() == FilesystemParams(root=str(tmp_path / "storage"))


@pytest.mark.parametrize("storage, message", [
    ({"driver": "s3", "s3": {"bucket": "b", "part_size_bytes": "lots"}}, "expected an integer"),
    ({"driver": "s3", "s3": {"bucket": "b", "redirect": "maybe"}}, "expected a boolean"),
    ({"driver": "s3", "s3": {"bucket": ["b"]}}, "expected a string"),
    ({"driver": "nfs", "nfs": {"url": "nfs://x/y", "threads": True}}, "expected an integer"),
    ({"driver": "nfs", "nfs": {"url": "nfs://x/y", "timeout": "soon"}}, "expected a number"),
    ({"driver": "s3", "bucket": "b", "max_attempts": "often"}, "expected an integer"),   # flat form
    ({"driver": "nfs", "nfs": {"url": "http://x/y"}}, r"storage\.nfs\.url must look like nfs://"),
    ({"driver": "nfs", "nfs": {"url": "nfs://x/y", "threads": 0}}, r"storage\.nfs\.threads must be at least 1"),
    ({"driver": "s3", "s3": {"bucket": "b", "list_page_size": 1001}}, "must be in 1..1000"),
    ({"driver": "nowhere"}, "unknown storage driver 'nowhere'"),
])
def test_a_wrong_value_is_an_error(storage, message, tmp_path):
    with pytest.raises(ConfigError, match=message):
        load(tmp_path, storage)


def test_a_wrong_type_from_the_environment_names_the_variable(tmp_path):
    with pytest.raises(ConfigError, match="^DAOHUB_STORAGE_S3_MAX_ATTEMPTS: expected an integer"):
        load(tmp_path, {"driver": "s3", "s3": BASE["s3"]}, {"DAOHUB_STORAGE_S3_MAX_ATTEMPTS": "often"})


def test_an_unknown_storage_variable_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="^unknown configuration variable: DAOHUB_STORAGE_BUKKET"):
        load(tmp_path, {}, {"DAOHUB_STORAGE_BUKKET": "b"})


# --- the flat keys of the old form ----------------------------------------------------------

LEGACY_CASES = [(flat, driver) for flat, (drivers, _) in LEGACY_STORAGE_KEYS.items() for driver in drivers]


def test_the_table_holds_every_flat_key_of_the_old_form():
    # StorageConfig's fields before the driver sections (hub/config.py at 43fac5b), but `driver`.
    assert set(LEGACY_STORAGE_KEYS) == {
        "root", "bucket", "region", "endpoint", "internal_endpoint", "access_key", "secret_key", "session_token",
        "addressing_style", "prefix", "part_size_bytes", "max_attempts", "verify_tls", "redirect",
        "redirect_expiry_seconds", "socket_reads", "nfs_url", "nfs_threads"}
    for flat, (drivers, key) in LEGACY_STORAGE_KEYS.items():
        for driver in drivers:
            assert key in fields(driver), (flat, driver)


@pytest.mark.parametrize("flat, driver", LEGACY_CASES)
def test_a_flat_key_maps_to_the_drivers_section(flat, driver, tmp_path, caplog):
    key = LEGACY_STORAGE_KEYS[flat][1]
    typ, default = fields(driver)[key]
    value = other_value(key, typ, default)
    caplog.set_level("WARNING", logger="daohub.config")
    # In the file, after the section (a later setting wins)...
    from_file = load(tmp_path, {"driver": driver, driver: BASE[driver], flat: value})
    # ...and as the variable of the old form, over the file's section.
    variable = f"DAOHUB_STORAGE_{flat.upper()}"
    from_env = load(tmp_path, {"driver": driver, driver: BASE[driver]}, {variable: as_variable(value)})
    for config in (from_file, from_env):
        assert getattr(config.storage_params(), key) == value
    assert from_file.storage.legacy() == [f"storage.{flat}"]
    if variable == f"DAOHUB_STORAGE_{driver.upper()}_{key.upper()}":
        # DAOHUB_STORAGE_NFS_URL and _NFS_THREADS are spelled the same in both forms: no warning.
        assert from_env.storage.legacy() == [] and len(deprecations(caplog)) == 1
    else:
        assert from_env.storage.legacy() == [variable] and len(deprecations(caplog)) == 2
        assert variable in deprecations(caplog)[1]
    assert f"storage.{flat}" in deprecations(caplog)[0] and f"storage.{driver}" in deprecations(caplog)[0]


def test_one_warning_per_load_however_many_flat_keys(tmp_path, caplog):
    caplog.set_level("WARNING", logger="daohub.config")
    config = load(tmp_path, {"driver": "s3", "bucket": "b", "region": "r", "redirect": True},
                  {"DAOHUB_STORAGE_ACCESS_KEY": "a", "DAOHUB_STORAGE_SECRET_KEY": "s"})
    (warning,) = deprecations(caplog)
    for where in ("storage.bucket", "storage.region", "storage.redirect", "DAOHUB_STORAGE_ACCESS_KEY",
                  "DAOHUB_STORAGE_SECRET_KEY"):
        assert where in warning
    params = config.storage_params()
    assert (params.bucket, params.region, params.redirect, params.access_key) == ("b", "r", True, "a")


WRONG_DRIVER_CASES = [(flat, driver) for flat, (drivers, _) in LEGACY_STORAGE_KEYS.items()
                      for driver in DRIVERS if driver not in drivers]


@pytest.mark.parametrize("flat, driver", WRONG_DRIVER_CASES)
def test_a_flat_key_the_driver_lacks_is_an_error(flat, driver, tmp_path):
    drivers, key = LEGACY_STORAGE_KEYS[flat]
    value = other_value(key, *fields(drivers[0])[key])  # a valid value for the drivers that have it
    with pytest.raises(ConfigError, match=rf"^storage\.{flat}: storage driver {driver} has no setting '{key}'"):
        load(tmp_path, {"driver": driver, driver: BASE[driver], flat: value})
    variable = f"DAOHUB_STORAGE_{flat.upper()}"
    # DAOHUB_STORAGE_NFS_URL and _NFS_THREADS also name storage.nfs's settings: for another driver
    # they set a section that is not used, as before.
    if not flat.startswith("nfs_"):
        with pytest.raises(ConfigError, match=rf"^{variable}: storage driver {driver} has no setting"):
            load(tmp_path, {"driver": driver, driver: BASE[driver]}, {variable: as_variable(value)})
