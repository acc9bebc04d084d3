"""Request id, metrics, and the one place where errors become OCI JSON bodies."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
import uuid

from aiohttp import web
from aiohttp.web_log import AccessLogger
from aiohttp.web_protocol import RequestPayloadError

from auth.providers import ProviderUnavailable
from storage_backends import StorageError

from . import problems
from .actor import acting_as
from .errors import (BlobUploadInvalid, Denied, EndpointUnknown, InvalidParameters, ManifestInvalid, OciError,
                     PayloadTooLarge, TooManyRequests, Unauthorized, Unavailable, Unsupported, with_status)
from .keys import METRICS, REQUEST_ID, ROUTE, UPSTREAM
from .logs import client_error, describe_client_error

log = logging.getLogger("daohub.http")

API_VERSION_HEADER = ("Docker-Distribution-API-Version", "registry/2.0")

# Request ids: a random per-process prefix and a counter. Unique across processes and
# restarts for all practical purposes, and without a syscall per request as uuid4 has.
_ID_PREFIX = uuid.uuid4().hex[:12]
_id_counter = itertools.count(1)


def _error_response(err: OciError, request: web.Request) -> web.Response:
    if _is_api(request):
        return _problem_response(problems.from_status(err.status, err.message, dict(err.headers)), request)
    response = web.Response(
        status=err.status,
        body=json.dumps(err.body()).encode(),
        content_type="application/json",
    )
    for key, value in err.headers.items():
        response.headers[key] = value
    return response


def _problem_response(problem: problems.Problem, request: web.Request) -> web.Response:
    response = web.Response(status=problem.status, body=json.dumps(problem.body(request.path)).encode(),
                            content_type=problems.MEDIA_TYPE)
    for key, value in problem.headers.items():
        response.headers[key] = value
    return response


def _is_api(request: web.Request) -> bool:
    """The admin API answers every error as problem+json, never as OCI JSON."""
    return request.path.startswith("/api/")


async def _answer_and_close(request: web.Request, response: web.Response, request_id: str) -> web.Response:
    """Send `response`, then close the connection without draining the unread body.

    aiohttp would otherwise keep reading (and discarding) the rest of the body for up to ten
    seconds before closing; for a stalled upload that is ten seconds of nothing.
    """
    response.headers["X-Request-Id"] = request_id
    response.headers[API_VERSION_HEADER[0]] = API_VERSION_HEADER[1]
    response.force_close()
    await response.prepare(request)
    await response.write_eof()
    if request.protocol is not None:
        request.protocol.force_close()  # the bytes above are flushed before the socket closes
    return response


# A client that goes away mid-request: aiohttp sets ConnectionResetError on the body
# stream. There is nobody left to answer; the handler's cleanup has already run.
_DISCONNECTS = (ConnectionError, asyncio.IncompleteReadError)


@web.middleware
async def request_context(request: web.Request, handler) -> web.StreamResponse:
    request_id = request.headers.get("X-Request-Id", "")[:64] or f"{_ID_PREFIX}{next(_id_counter):x}"
    request[REQUEST_ID] = request_id
    metrics = request.app[METRICS]
    started = time.perf_counter()
    metrics.in_flight.inc()
    metrics.active.enter()
    status = 500
    try:
        try:
            # The events this request writes name its caller (authorization fills it in).
            with acting_as(None):
                response = await handler(request)
        except problems.Problem as problem:
            response = _problem_response(problem, request)
        except OciError as err:
            response = _error_response(err, request)
            if err.close_connection:
                status = response.status
                return await _answer_and_close(request, response, request_id)
        except RequestPayloadError as exc:
            # A body aiohttp cannot decode (broken chunk framing, "gzip" that is not) is the
            # client's fault: 400 and an info line. The rest of the stream cannot be parsed.
            err = _body_invalid(request, exc)
            log.info("bad request from %s: %s %s: %s request_id=%s", request.remote, request.method,
                     request.path, err.message, request_id)
            response = _error_response(err, request)
            status = response.status
            return await _answer_and_close(request, response, request_id)
        except web.HTTPException as exc:
            if exc.status >= 400:
                response = _error_response(_from_http_exception(exc), request)
            else:
                raise
        except _DISCONNECTS as exc:
            # Whatever the request delivered before it went away is kept (uploads stay
            # resumable). 499 is what the access log shows; nobody is there to read it.
            log.info("client went away: %s %s (%s: %s) request_id=%s", request.method, request.path,
                     type(exc).__name__, exc, request_id)
            response = web.Response(status=499)
        except asyncio.CancelledError:
            status = 499
            raise
        except ProviderUnavailable as exc:
            # A directory (LDAP) that vouches for the caller is down: local accounts still work.
            log.warning("%s on %s %s request_id=%s", exc, request.method, request.path, request_id)
            response = _error_response(Unavailable(str(exc), headers={"Retry-After": "30"}), request)
        except StorageError as exc:
            # An outage of the storage backend fails every request at once; one line each keeps
            # the log readable, and the stack (the same every time) is there at debug level.
            log.error("storage error on %s %s: %s: %s request_id=%s", request.method, request.path,
                      type(exc).__name__, exc, request_id)
            log.debug("storage error traceback, request_id=%s", request_id, exc_info=True)
            response = _error_response(OciError("internal server error"), request)
        except Exception:
            log.exception("unhandled error on %s %s request_id=%s", request.method, request.path, request_id)
            response = _error_response(OciError("internal server error"), request)
        status = response.status
        if not response.prepared:
            response.headers["X-Request-Id"] = request_id
            response.headers[API_VERSION_HEADER[0]] = API_VERSION_HEADER[1]
        return response
    finally:
        metrics.active.leave()
        metrics.in_flight.dec()
        metrics.observe_request(request.method, request.get(ROUTE) or "other", status,
                                time.perf_counter() - started)


def _body_invalid(request: web.Request, exc: RequestPayloadError) -> OciError:
    parse_error = client_error(exc)
    reason = describe_client_error(parse_error) if parse_error is not None else str(exc)[:300]
    if "/blobs/uploads/" in request.path:
        kind: type[OciError] = BlobUploadInvalid
    elif "/manifests/" in request.path:
        kind = ManifestInvalid
    else:
        kind = InvalidParameters
    return kind(f"malformed request body: {reason}")


# Every 4xx body carries a code of the spec's list: the nearest one, else UNSUPPORTED ("an
# invalid set of parameters"); only a 5xx may say UNKNOWN.
_HTTP_ERRORS: dict[int, type[OciError]] = {400: InvalidParameters, 401: Unauthorized, 403: Denied,
                                           404: EndpointUnknown, 405: Unsupported, 413: PayloadTooLarge,
                                           429: TooManyRequests}


def _from_http_exception(exc: web.HTTPException) -> OciError:
    base = OciError if exc.status >= 500 else Unsupported
    kind = _HTTP_ERRORS.get(exc.status) or with_status(base, exc.status)
    return kind(exc.reason)


class AccessLogSink:
    """Buffers access-log lines and writes them in batches (at most `interval` seconds late).

    The logging module costs more per line than serving a manifest does, so the access log
    bypasses it: each line is still one self-contained JSON object, written straight to the
    stream.
    """

    def __init__(self, stream=None, interval: float = 0.2, max_lines: int = 256):
        import sys

        self.stream = stream or sys.stderr
        self.interval = interval
        self.max_lines = max_lines
        self._lines: list[str] = []
        self._timer: asyncio.TimerHandle | None = None
        self._second = -1
        self._second_text = ""

    def timestamp(self, now: float) -> str:
        second = int(now)
        if second != self._second:
            self._second = second
            self._second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._second_text}.{int((now - second) * 1000):03d}Z"

    def write(self, line: str) -> None:
        self._lines.append(line)
        if len(self._lines) >= self.max_lines:
            self.flush()
        elif self._timer is None:
            try:
                self._timer = asyncio.get_running_loop().call_later(self.interval, self.flush)
            except RuntimeError:
                self.flush()

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._lines:
            lines, self._lines = self._lines, []
            try:
                self.stream.write("\n".join(lines) + "\n")
                self.stream.flush()
            except (OSError, ValueError):
                pass  # a closed or full log stream must never break serving


class JsonAccessLogger(AccessLogger):
    """One JSON object per request, written through an AccessLogSink (see `bind`)."""

    sink: AccessLogSink | None = None

    def __init__(self, logger: logging.Logger, log_format: str = "") -> None:
        super().__init__(logger, log_format or AccessLogger.LOG_FORMAT)

    @classmethod
    def bind(cls, sink: AccessLogSink) -> type[JsonAccessLogger]:
        return type("BoundJsonAccessLogger", (cls,), {"sink": sink})

    def log(self, request, response, time_taken: float) -> None:
        try:
            now = time.time()
            record = {
                "time": self.sink.timestamp(now) if self.sink else now,
                "logger": "daohub.access",
                "request_id": request.get(REQUEST_ID) if request is not None else None,
                "remote": request.remote if request is not None else None,
                "method": request.method if request is not None else None,
                "path": request.path if request is not None else None,
                "route": request.get(ROUTE) if request is not None else None,
                "upstream": request.get(UPSTREAM) if request is not None else None,
                "status": response.status,
                "bytes": response.body_length,
                "duration_ms": round(time_taken * 1000, 3),
                "user_agent": request.headers.get("User-Agent") if request is not None else None,
            }
            line = json.dumps(record, separators=(",", ":"))
            if self.sink is not None:
                self.sink.write(line)
            else:
                self.logger.info(line)
        except Exception:
            self.logger.exception("access log failed")
