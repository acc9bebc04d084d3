"""Storage errors. Drivers raise only these; the registry layer translates them."""


class StorageError(Exception):
    """Base class of every storage driver error."""


class PathNotFoundError(StorageError):
    def __init__(self, path: str):
        super().__init__(f"path not found: {path}")
        self.path = path


class InvalidPathError(StorageError):
    def __init__(self, path: str, reason: str = "invalid path"):
        super().__init__(f"{reason}: {path!r}")
        self.path = path


class InvalidOffsetError(StorageError):
    def __init__(self, path: str, offset: int):
        super().__init__(f"invalid offset {offset} for {path}")
        self.path = path
        self.offset = offset


class WriterClosedError(StorageError):
    def __init__(self, path: str):
        super().__init__(f"writer already closed, committed or cancelled: {path}")
        self.path = path


class UnsupportedMethodError(StorageError):
    pass
