"""Logging set-up: plain text or one JSON object per line."""

from __future__ import annotations

import json
import logging
import sys
import time

from aiohttp.http_exceptions import HttpProcessingError


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, separators=(",", ":"))


def client_error(exc: BaseException | None) -> HttpProcessingError | None:
    """The 4xx parse error behind `exc` (itself, its cause or context), if a client's bytes caused it.

    aiohttp raises HttpProcessingError subclasses for requests it cannot parse (a NUL or other
    invalid character in a header, a bad request line, a header over its size limit, a broken
    chunked or compressed body); for a body, wrapped in web_protocol.RequestPayloadError.
    """
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, HttpProcessingError) and 400 <= (exc.code or 0) < 500:
            return exc
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return None


def describe_client_error(exc: HttpProcessingError) -> str:
    """One line, at most 300 characters: aiohttp's messages span lines and quote the bad bytes."""
    return f"{exc.code} {' '.join(str(exc.message).split())}"[:300]


class ClientErrorFilter(logging.Filter):
    """Logs a malformed request as the client's fault: one INFO line, no traceback.

    aiohttp answers such a request with 400 but logs "Error handling request" at ERROR with the
    parser's traceback, which reads as a server fault and lets any client fill the error log.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        parse_error = client_error(record.exc_info[1] if record.exc_info else None)
        if parse_error is None:
            return True
        record.msg = f"{record.getMessage()}: bad request: {describe_client_error(parse_error)}"
        record.args = None
        record.levelno, record.levelname = logging.INFO, "INFO"
        record.exc_info = record.exc_text = None
        return logging.getLogger(record.name).isEnabledFor(logging.INFO)


def setup_logging(level: str = "INFO", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    server_log = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, ClientErrorFilter) for f in server_log.filters):
        server_log.addFilter(ClientErrorFilter())
