"""Drivers register by name; an unknown name is an error, never a silent fallback."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .base import StorageDriver
from .checked import CheckedDriver

_FACTORIES: dict[str, Callable[..., StorageDriver]] = {}


def register(name: str, factory: Callable[..., StorageDriver]) -> None:
    _FACTORIES[name] = factory


def available() -> list[str]:
    return sorted(_FACTORIES)


def create(name: str, **options: Any) -> StorageDriver:
    try:
        factory = _FACTORIES[name]
    except KeyError:
        raise ValueError(f"unknown storage driver {name!r}; available: {', '.join(available())}") from None
    return CheckedDriver(factory(**options))


def _register_builtin() -> None:
    from .filesystem import FilesystemDriver
    from .memory import MemoryDriver

    register("filesystem", lambda root, **_: FilesystemDriver(root))
    register("memory", lambda **_: MemoryDriver())

    def nfs(url: str, threads: int = 4, **_: Any) -> StorageDriver:
        from .nfs import NfsDriver  # loads libnfs only where it is used

        return NfsDriver(url, threads)

    register("nfs", nfs)

    def s3(**options: Any) -> StorageDriver:
        from .s3 import S3Driver  # aiobotocore is imported only by deployments that use it

        return S3Driver(**options)

    def oss(**options: Any) -> StorageDriver:
        from .s3 import OssDriver

        return OssDriver(**options)

    register("s3", s3)
    register("oss", oss)


_register_builtin()
