"""Drivers register by name with their params type; an unknown name or setting is an error,
never a silent fallback."""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable, Mapping
from typing import Any

from .base import StorageDriver
from .checked import CheckedDriver

# name -> (factory taking the params, the params type or a function returning it: the s3 and nfs
# modules import aiobotocore and libnfs bindings, so they load only when their driver is named)
_DRIVERS: dict[str, tuple[Callable[[Any], StorageDriver], type | Callable[[], type]]] = {}


@dataclasses.dataclass(frozen=True, kw_only=True)
class NoParams:
    """The settings of a driver that has none (memory)."""


def register(name: str, factory: Callable[[Any], StorageDriver], params_type: type | Callable[[], type]) -> None:
    _DRIVERS[name] = (factory, params_type)


def available() -> list[str]:
    return sorted(_DRIVERS)


def params_type(name: str) -> type:
    """The frozen dataclass holding driver `name`'s settings (its fields are the config keys)."""
    try:
        factory, kind = _DRIVERS[name]
    except KeyError:
        raise ValueError(f"unknown storage driver {name!r}; available: {', '.join(available())}") from None
    if not isinstance(kind, type):
        kind = kind()
        _DRIVERS[name] = (factory, kind)
    return kind


def make_params(name: str, settings: Mapping[str, Any]) -> Any:
    """Driver `name`'s params from `settings`; a key the driver lacks is an error naming the allowed
    ones, and so is a bad value (the params type checks its values)."""
    kind = params_type(name)
    known = [f.name for f in dataclasses.fields(kind)]
    for key in settings:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            allowed = ", ".join(known) or "none"
            raise ValueError(f"storage.{name}: unknown setting {key!r}{hint}; allowed: {allowed}")
    return kind(**settings)


def create(name: str, params: Any = None, /, **settings: Any) -> StorageDriver:
    """The driver `name`, wrapped in CheckedDriver, on `params`: its params object, or a mapping (or
    keyword arguments) checked by make_params."""
    if params is not None and isinstance(params, params_type(name)):
        if settings:
            raise TypeError("create() takes a params object or settings, not both")
        made = params
    else:
        made = make_params(name, {**(params or {}), **settings})
    factory, _ = _DRIVERS[name]
    return CheckedDriver(factory(made))


def _register_builtin() -> None:
    from .filesystem import FilesystemDriver, FilesystemParams
    from .memory import MemoryDriver

    register("filesystem", FilesystemDriver, FilesystemParams)
    register("memory", lambda _: MemoryDriver(), NoParams)

    def nfs(params: Any) -> StorageDriver:
        from .nfs import NfsDriver  # loads libnfs only where it is used

        return NfsDriver(params)

    def nfs_params() -> type:
        from .nfs import NfsParams

        return NfsParams

    register("nfs", nfs, nfs_params)

    def s3(params: Any) -> StorageDriver:
        from .s3 import S3Driver  # aiobotocore is imported only by deployments that use it

        return S3Driver(params)

    def oss(params: Any) -> StorageDriver:
        from .s3 import OssDriver

        return OssDriver(params)

    def s3_params() -> type:
        from .s3 import S3Params

        return S3Params

    def oss_params() -> type:
        from .s3 import OssParams

        return OssParams

    register("s3", s3, s3_params)
    register("oss", oss, oss_params)


_register_builtin()
