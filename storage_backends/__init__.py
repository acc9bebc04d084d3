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
from .registry import NoParams, available, create, make_params, params_type, register

__all__ = [
    "FileInfo",
    "FileWriter",
    "InvalidOffsetError",
    "InvalidPathError",
    "NoParams",
    "PathNotFoundError",
    "StorageDriver",
    "StorageError",
    "UnsupportedMethodError",
    "WriterClosedError",
    "available",
    "create",
    "make_params",
    "params_type",
    "register",
]
