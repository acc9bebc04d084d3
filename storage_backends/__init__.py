"""Storage drivers: bytes at paths, one small async interface, many backends."""

from .base import FileInfo, FileWriter, StorageDriver
from .errors import (
    InvalidOffsetError,
    InvalidPathError,
    PathNotFoundError,
    StorageError,
    UnsupportedMethodError,
    WriterClosedError,
)
from .registry import available, create, register

__all__ = [
    "FileInfo",
    "FileWriter",
    "InvalidOffsetError",
    "InvalidPathError",
    "PathNotFoundError",
    "StorageDriver",
    "StorageError",
    "UnsupportedMethodError",
    "WriterClosedError",
    "available",
    "create",
    "register",
]
