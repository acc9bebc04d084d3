"""The fuzz targets: one function per parser of untrusted bytes, each called through its public API.

A target takes the fuzzer's bytes, calls the parser, and lets through only the error types the
parser documents (`Target.expected`): any other exception is a finding, and so is a broken
invariant (an AssertionError) or, for the HTTP targets, a 5xx answer. Each target's seed corpus
is tests/fuzz/corpus/<name>/ and its libFuzzer dictionary tests/fuzz/dicts/<name>.dict.

Inputs that carry several fields separate them with a line `--8<--` (split_fields); a field
that is missing is empty.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import quote

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

SEPARATOR = b"\n--8<--\n"


@dataclass(frozen=True)
class Target:
    name: str
    run: Callable[[bytes], None]
    expected: tuple[type[BaseException], ...]
    # Inputs in pytest's bounded run (tests/fuzz/test_fuzz.py); FUZZ_RUNS overrides them all.
    bounded_runs: int = 4000
    doc: str = ""
    max_len: int = 0  # libFuzzer's -max_len when not given; 0 leaves it to libFuzzer


TARGETS: dict[str, Target] = {}


def target(name: str, expected: tuple[type[BaseException], ...] = (), **kwargs):
    def register(fn: Callable[[bytes], None]) -> Callable[[bytes], None]:
        TARGETS[name] = Target(name, fn, expected, doc=(fn.__doc__ or "").strip().splitlines()[0], **kwargs)
        return fn
    return register


def split_fields(data: bytes, count: int) -> list[bytes]:
    parts = data.split(SEPARATOR, count - 1)
    return parts + [b""] * (count - len(parts))


def text(data: bytes) -> str:
    """Bytes as aiohttp hands header values and form fields to handlers (UTF-8, bad bytes kept)."""
    return data.decode("utf-8", "surrogateescape")


def scratch(name: str) -> Path:
    """An empty directory for a target's files, under $FUZZ_SCRATCH (the runner sets it)."""
    root = Path(os.environ.get("FUZZ_SCRATCH") or tempfile.gettempdir()) / name
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    return root


def pick(options: tuple, data: bytes):
    """One of `options`, chosen by the input (so mutations of one seed reach all of them)."""
    return options[len(data) % len(options)]


# --------------------------------------------------------------------------- registry grammar

from hub.errors import (  # noqa: E402  (the runner imports this module under atheris' instrumentation)
    DigestInvalid,
    ManifestInvalid,
    NameInvalid,
    OciError,
    RangeNotSatisfiable,
    TagInvalid,
)
from hub.registry import mediatypes as mt  # noqa: E402
from hub.registry.manifests import parse_manifest  # noqa: E402
from hub.registry.names import (  # noqa: E402
    COMPONENT_RE,
    MAX_NAME_LENGTH,
    is_tag,
    parse_digest,
    validate_name,
    validate_tag,
)

CONTENT_TYPES = (None, "", mt.OCI_MANIFEST, mt.OCI_INDEX, mt.DOCKER_MANIFEST, mt.DOCKER_MANIFEST_LIST,
                 "application/json", "application/octet-stream; charset=utf-8", mt.DOCKER_SCHEMA1_SIGNED)


@target("manifest", (ManifestInvalid,))
def manifest(data: bytes) -> None:
    """Manifest and index validation (hub.registry.manifests), with and without a Content-Type."""
    for content_type in (None, pick(CONTENT_TYPES, data)):
        try:
            parsed = parse_manifest(data, content_type)
        except ManifestInvalid:
            continue
        assert parsed.media_type in mt.MANIFEST_TYPES, parsed.media_type
        for ref in (*parsed.blob_refs, *parsed.manifest_refs, *((parsed.subject,) if parsed.subject else ())):
            parse_digest(ref)  # every reference the store links is a valid digest
        doc = json.loads(data)
        assert isinstance(doc, dict)
        descriptors = [doc.get("config"), *(doc.get("layers") or []), *(doc.get("manifests") or [])]
        for descriptor in descriptors:
            if isinstance(descriptor, dict):
                size = descriptor["size"]  # int64, as Go clients read it
                assert isinstance(size, int) and not isinstance(size, bool) and 0 <= size < 2**63, size


@target("names", (NameInvalid, TagInvalid, DigestInvalid))
def names(data: bytes) -> None:
    """Repository names, tags and digests (hub.registry.names)."""
    value = text(data)
    for check in (validate_name, validate_tag, parse_digest):
        try:
            result = check(value)
        except (NameInvalid, TagInvalid, DigestInvalid) as exc:
            assert exc.status == 400
            continue
        if check is validate_name:
            assert len(value) <= MAX_NAME_LENGTH and all(COMPONENT_RE.fullmatch(c) for c in value.split("/"))
            assert ".." not in value.split("/") and value.isascii()
        elif check is validate_tag:
            assert is_tag(value) and len(value) <= 128 and "/" not in value
        else:
            assert str(result) == value and result.hasher().name == result.algorithm
            assert result.blob_path.endswith("/" + result.hex) and ".." not in result.blob_path


from hub import safejson  # noqa: E402


class _Pairs(list):
    """A JSON object as all its (key, value) pairs: a repeated key's earlier values nest too."""


def _depth(value) -> int:
    """How deeply arrays and objects nest in a JSON value parsed with object_pairs_hook=_Pairs."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, list):
            deepest = max(deepest, level)
            children = (v for _, v in node) if isinstance(node, _Pairs) else node
            stack.extend((child, level + 1) for child in children)
    return deepest


@target("safejson", (ValueError,))
def safe_json(data: bytes) -> None:
    """JSON with its nesting bounded before parsing (hub.safejson): the scan agrees with the parse."""
    try:
        text = safejson.decode(data)
    except ValueError:
        return
    try:
        depth = _depth(json.loads(text, object_pairs_hook=_Pairs))
        parsed = json.loads(text)
    except RecursionError:  # too deep for json.loads: safejson must refuse it up front
        depth = math.inf
    except ValueError:  # not JSON: safejson must refuse it too, as too deep or as not JSON
        depth = None
    else:
        assert safejson.nesting_depth(text) == depth, (depth, safejson.nesting_depth(text), text[:200])
    try:
        result = safejson.loads(data)
    except safejson.JsonTooDeep:
        assert depth is None or depth > safejson.MAX_DEPTH, (depth, text[:200])
        return
    assert depth is not None and depth <= safejson.MAX_DEPTH, (depth, text[:200])
    assert json.dumps(result) == json.dumps(parsed)  # (dumps: NaN is not equal to itself)


# --------------------------------------------------------------------------- ranges

from hub.handlers.base import content_range  # noqa: E402
from hub.handlers.blobs import parse_range  # noqa: E402

BLOB_SIZES = (0, 1, 7, 4096, 2**40)


def _ranges(result) -> list[tuple[int, int]]:
    """parse_range's answer as a list of (start, end) pairs: one pair, or several."""
    if result is None:
        return []
    if isinstance(result, tuple) and len(result) == 2 and all(isinstance(x, int) for x in result):
        return [result]
    return [tuple(r) for r in result]


@target("range", (OciError,))
def range_header(data: bytes) -> None:
    """Range of blob GETs (hub.handlers.blobs) and Content-Range of upload PATCHes (hub.handlers.base)."""
    value = text(data)
    for size in BLOB_SIZES:
        try:
            result = parse_range(value, size)
        except OciError as exc:
            assert exc.status == 416, exc
            assert exc.headers.get("Content-Range") == f"bytes */{size}", (exc, exc.headers)
            continue
        for start, end in _ranges(result):
            assert 0 <= start <= end < size, (value, size, result)
    try:
        start, end = content_range(SimpleNamespace(headers={"Content-Range": value}))
    except RangeNotSatisfiable as exc:
        assert exc.status == 416
    else:
        assert 0 <= start <= end, (value, start, end)


# --------------------------------------------------------------------------- auth

from auth.keys import KeyRing  # noqa: E402
from auth.scopes import MAX_SCOPE_LENGTH, parse_scope, split_scopes  # noqa: E402
from auth.tokens import REFRESH_TYP, InvalidToken, TokenIssuer, TokenVerifier, refresh_audience  # noqa: E402


@target("scopes")
def scopes(data: bytes) -> None:
    """Token scopes (auth.scopes.split_scopes and parse_scope): nothing there raises."""
    raw = text(data)
    parsed, dropped = split_scopes([raw, *raw.split("\n")])
    for scope in parsed:
        assert scope.actions and scope.name.isprintable() and not any(c.isspace() for c in scope.name)
        again = parse_scope(str(scope))  # a granted scope prints as a scope that parses to itself
        if len(str(scope)) <= MAX_SCOPE_LENGTH:
            assert again == scope, (str(scope), again)
    assert all(isinstance(d, str) for d in dropped)


_RING = KeyRing.generate()
_ISSUER = TokenIssuer(_RING, "daohub", "daohub")
_VERIFIER = TokenVerifier(_RING, "daohub", "daohub", cache_size=0)
_KID = _RING.current.kid


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _signed(header: bytes, payload: bytes) -> str:
    """A token whose header and payload are the fuzzer's bytes, signed with the ring's key."""
    signing_input = f"{_b64(header)}.{_b64(payload)}".encode()
    r, s = decode_dss_signature(_RING.current.private_key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
    return f"{signing_input.decode()}.{_b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


@target("jwt", (InvalidToken,), bounded_runs=2000)
def jwt_verifier(data: bytes) -> None:
    """The JWT verifier (auth.tokens): token text, and fuzzed header/payload JSON signed with its key."""
    header, payload, raw = split_fields(data, 3)
    tokens = [text(data), text(raw)]
    if header or payload:
        tokens.append(_signed(header, payload))
        # The same payload under a header that passes every header check, so the claims are read.
        for typ in ("JWT", REFRESH_TYP):
            tokens.append(_signed(json.dumps({"alg": "ES256", "typ": typ, "kid": _KID}).encode(), payload))
    for token in tokens:
        for verify in (_VERIFIER.verify, _VERIFIER.verify_refresh_token):
            try:
                verified = verify(token)
            except InvalidToken:
                continue
            assert isinstance(verified.subject, str) and math.isfinite(verified.expires_at)
            if verify is _VERIFIER.verify:
                claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
                assert claims["aud"] == "daohub" or claims["aud"] == ["daohub"], claims
            else:
                assert isinstance(verified.client_id, str) and verified.client_id
    # A token the issuer made always verifies (the checks above refuse nothing of its own).
    issued = _ISSUER.issue(text(header)[:100] or "user", parse_scopes_of(payload))
    assert _VERIFIER.verify(issued.token).subject == (text(header)[:100] or "user")
    refresh = _ISSUER.issue_refresh_token("user", text(payload)[:50] or "client")
    assert _VERIFIER.verify_refresh_token(refresh).client_id == (text(payload)[:50] or "client")
    with contextlib.suppress(InvalidToken):
        _VERIFIER.verify_refresh_token(refresh, client_id=text(raw)[:50])
    assert refresh_audience("daohub") != "daohub"


def parse_scopes_of(data: bytes):
    return split_scopes([text(data)])[0]


# --------------------------------------------------------------------------- app store

from appstore import interpolate as interp  # noqa: E402
from appstore import portainer, rancher, yamlsafe  # noqa: E402
from appstore.errors import InterpolationError, ModelError, YamlError  # noqa: E402

_PLAIN = (dict, list, str, int, float, bool, type(None))


def _plain(value, depth: int = 0) -> bool:
    """True when `value` is the plain data yamlsafe.load documents (dict, list, str, numbers, bool, None)."""
    if depth > 200 or not isinstance(value, _PLAIN):
        return False
    if isinstance(value, dict):
        return all(_plain(k, depth + 1) and not isinstance(k, (dict, list)) and _plain(v, depth + 1)
                   for k, v in value.items())
    if isinstance(value, list):
        return all(_plain(v, depth + 1) for v in value)
    return True


def _has_nan(value) -> bool:
    if isinstance(value, float):
        return math.isnan(value)
    if isinstance(value, dict):
        return any(_has_nan(k) or _has_nan(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nan(v) for v in value)
    return False


@target("yaml", (YamlError,))
def yaml_load(data: bytes) -> None:
    """The bounded YAML loader (appstore.yamlsafe.load): plain data out, or YamlError; dump and load agree."""
    doc = yamlsafe.load(data)
    assert _plain(doc), repr(doc)[:300]
    if not _has_nan(doc):
        assert yamlsafe.load(yamlsafe.dump(doc)) == doc, repr(doc)[:300]


_MAPPING = {"A": "x", "EMPTY": "", "B": "${A}", "DOLLAR": "$", "LONG": "y" * 1000}
_DEFAULTS = {"A": "d1", "EMPTY": "d: 2", "DOLLAR": "$x", "B": None}  # names _MAPPING sets


@target("interpolate", (InterpolationError,))
def interpolation(data: bytes) -> None:
    """Compose interpolation (appstore.interpolate): strings, and trees from YAML."""
    value = text(data)
    assert interp.interpolate(interp.escape(value), {}) == value
    missing: list[str] = []
    with contextlib.suppress(InterpolationError):
        interp.interpolate(value, _MAPPING, on_missing=missing.append, max_chars=1 << 16)
    assert all(name.isidentifier() for name in missing), missing
    # Defaults written for Compose (with_defaults) never change what a set variable gives.
    for inline in (True, False):
        defaulted = interp.with_defaults(value, _DEFAULTS, inline=inline)
        try:
            expected = interp.interpolate(value, _MAPPING, max_chars=1 << 16)
        except InterpolationError:
            continue
        assert interp.interpolate(defaulted, _MAPPING, max_chars=1 << 17) == expected, (value, defaulted)
    with contextlib.suppress(InterpolationError):
        names_used = interp.variables({"k": value, "l": [value, {"m": value}]})
        assert len(set(names_used)) == len(names_used)
    try:
        doc = yamlsafe.load(data)
    except YamlError:
        return
    interp.interpolate_tree(doc, _MAPPING, max_chars=1 << 16)
    assert interp.interpolate_tree(interp.escape_tree(doc), {}) == doc or _has_nan(doc)


def _stackfile(repository: dict) -> str | None:
    url = repository.get("url")
    return "services:\n  app:\n    image: ${IMAGE:-nginx}\n" if isinstance(url, str) and url else None


@target("portainer", (ModelError,))
def portainer_feed(data: bytes) -> None:
    """The Portainer template importer (appstore.portainer.import_feed), then export and import again."""
    try:  # as DaoHub reads untrusted JSON: depth bounded, no unpaired surrogates (they are no text)
        doc = safejson.loads(data, unpaired_surrogates=False)
    except ValueError:  # not a JSON document: refused before the importer
        return
    apps = portainer.import_feed(doc, fetch_stackfile=_stackfile)
    for version in ("2", "3"):
        feed = json.loads(json.dumps(portainer.export_feed(apps, version=version)))
        try:
            again = portainer.import_feed(feed, fetch_stackfile=_stackfile)
        except ModelError as exc:  # what the importer accepted once, it accepts again from its own export
            raise AssertionError(f"an exported feed does not import: {exc}; {feed!r:.500}") from None
        assert [a.title for a in again] == [a.title for a in apps]


_RANCHER_FILES = ("config.yml", "0/docker-compose.yml", "0/rancher-compose.yml", "1/docker-compose.yml",
                  "1/rancher-compose.yml")
_RANCHER_DIR: dict[str, Path] = {}


@target("rancher", (ModelError,), bounded_runs=1500)
def rancher_folder(data: bytes) -> None:
    """The Rancher v1 catalog importer (appstore.rancher): config.yml and two version folders."""
    folder = _RANCHER_DIR.get("app") or _RANCHER_DIR.setdefault("app", scratch("rancher") / "app")
    for relative, content in zip(_RANCHER_FILES, split_fields(data, len(_RANCHER_FILES)), strict=True):
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if content:
            path.write_bytes(content)
        else:
            path.unlink(missing_ok=True)
    app = rancher.import_rancher_folder(folder)
    assert app.versions and all(v.compose_files for v in app.versions)
    for version in app.versions:
        for compose in version.compose_files.values():
            yamlsafe.load(compose)  # what the importer wrote is YAML the app store reads back


# --------------------------------------------------------------------------- over HTTP

from aiohttp.test_utils import TestClient, TestServer  # noqa: E402
from yarl import URL  # noqa: E402

from hub.app import create_app  # noqa: E402
from hub.config import load_config  # noqa: E402
from hub.keys import AUTH, STORE  # noqa: E402

class _Http:
    """One in-process DaoHub (aiohttp TestServer) on a loop of its own, built on first use."""

    def __init__(self, name: str, config_overrides: dict, setup: Callable | None = None):
        self.name = name
        self.overrides = config_overrides
        self.setup = setup
        self.loop: asyncio.AbstractEventLoop | None = None
        self.client = None
        self.state: dict = {}

    def run(self, coro):
        if self.loop is None:
            self.loop = asyncio.new_event_loop()
            self.loop.run_until_complete(self._start())
        return self.loop.run_until_complete(coro)

    async def _start(self) -> None:
        data_dir = scratch(self.name)
        config = load_config(environ={}, overrides={"data_dir": str(data_dir), "log": {"access_log": False},
                                                    **self.overrides})
        self.client = TestClient(TestServer(create_app(config)))
        await self.client.start_server()
        if self.setup is not None:
            await self.setup(self)

    async def request(self, method: str, path: str, **kwargs) -> int:
        url = URL(quote(path, safe="/?&=%:;+,@!$'()*[]~-_.", errors="surrogateescape"), encoded=True)
        async with self.client.request(method, url, allow_redirects=False, **kwargs) as response:
            await response.read()
            assert response.status < 500, (method, path, response.status, await response.text())
            return response.status


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# The blobs every registry seed refers to (tests/fuzz/corpus/registry_http).
CONFIG_BLOB = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
LAYER_BLOB = b"daohub fuzz layer " * 64


async def _registry_setup(http: _Http) -> None:
    for blob in (CONFIG_BLOB, LAYER_BLOB):
        status = await http.request("POST", f"/v2/fuzz/app/blobs/uploads/?digest={_sha256(blob)}", data=blob)
        assert status == 201


_REGISTRY = _Http("registry_http", {"storage": {"driver": "memory"}, "auth": {"enabled": False},
                   "registry": {"max_manifest_bytes": 256 * 1024}}, _registry_setup)
# aiohttp's client refuses control characters in a header value (and the server's parser of
# them is aiohttp's, not ours): they become spaces.
_HEADER_UNSAFE = str.maketrans({c: " " for c in [*range(32), 0x7f, 0x85] if c != 9})


def _header(data: bytes) -> str:
    return data.decode("latin-1").translate(_HEADER_UNSAFE)


async def _registry_input(data: bytes) -> None:
    op, rest = data[:1], data[1:]
    if op == b"M":  # a manifest PUT by tag, then by its digest, then read back
        content_type = pick(CONTENT_TYPES, rest) or "application/vnd.oci.image.manifest.v1+json"
        headers = {"Content-Type": content_type}
        status = await _REGISTRY.request("PUT", "/v2/fuzz/app/manifests/latest", data=rest, headers=headers)
        await _REGISTRY.request("PUT", f"/v2/fuzz/app/manifests/{_sha256(rest)}", data=rest, headers=headers)
        if status == 201:
            await _REGISTRY.request("GET", f"/v2/fuzz/app/manifests/{_sha256(rest)}")
            await _REGISTRY.request("GET", f"/v2/fuzz/app/referrers/{_sha256(rest)}")
    elif op == b"R":  # a ranged blob GET
        for blob in (LAYER_BLOB, CONFIG_BLOB):
            path = f"/v2/fuzz/app/blobs/{_sha256(blob)}"
            await _REGISTRY.request("GET", path, headers={"Range": _header(rest)})
    elif op == b"P":  # a chunk PATCHed with a Content-Range: first line the header, then the body
        header, _, body = rest.partition(b"\n")
        start = await _REGISTRY.client.post("/v2/fuzz/app/blobs/uploads/")
        location = start.headers["Location"]
        await _REGISTRY.request("PATCH", location, data=body, headers={"Content-Range": _header(header)})
        await _REGISTRY.request("PUT", f"{location}?digest={_sha256(body)}")
    else:  # any other request line: a path and query under /v2/
        await _REGISTRY.request("GET", "/v2/" + text(rest).translate(_HEADER_UNSAFE).replace(" ", "%20"))


@target("registry_http", bounded_runs=1500)
def registry_http(data: bytes) -> None:
    """Over HTTP, memory storage: manifest PUTs (M), ranged GETs (R), PATCHes (P), other GETs; no 5xx."""
    _REGISTRY.run(_registry_input(data))


async def _token_setup(http: _Http) -> None:
    app = http.client.server.app
    store, auth = app[STORE], app[AUTH]
    await store.create_tenant("team")
    await store.create_user("alice", await auth.hash_password("alice-pw"))
    await store.set_membership("team", "alice", "developer")


_TOKEN = _Http("token_http", {"auth": {"enabled": True, "password_memory_kib": 64, "password_time_cost": 1,
                         "login_failure_limit": 1_000_000}}, _token_setup)


async def _token_input(data: bytes) -> None:
    query, form, authorization = split_fields(data, 3)
    headers = {"Authorization": _header(authorization)} if authorization else {}
    await _TOKEN.request("GET", "/auth/token?" + text(query).translate(_HEADER_UNSAFE), headers=headers)
    if form:
        await _TOKEN.request("POST", "/auth/token", data=form, headers={
            **headers, "Content-Type": "application/x-www-form-urlencoded"})


@target("token_http", bounded_runs=1500)
def token_http(data: bytes) -> None:
    """Over HTTP, auth on: the token endpoint's GET query, POST form and Basic credentials; no 5xx."""
    _TOKEN.run(_token_input(data))


@target("_canary", (ValueError,))
def canary(data: bytes) -> None:
    """Not a parser: fails on purpose (CRASH raises KeyError, HANG sleeps), for the runner's own tests."""
    if b"CRASH" in data:
        raise KeyError("the canary's crash")
    if b"HANG" in data:
        import time

        time.sleep(120)
    raise ValueError("an expected error is no finding")


__all__ = ["SEPARATOR", "TARGETS", "Target", "split_fields"]


from datetime import UTC, datetime, timedelta  # noqa: E402

from hub.retention import (DELETE, KEEP, PROTECT, RetentionError, TagRecord, evaluate,  # noqa: E402
                           parse_immutable_rules, parse_policy, protects)

_RETENTION_NOW = datetime(2026, 12, 1, tzinfo=UTC)
_RETENTION_TAGS = tuple(
    TagRecord(repo, tag, f"sha256:{n:064x}", _RETENTION_NOW - timedelta(days=n), kind,
              _RETENTION_NOW - timedelta(hours=n) if n % 3 == 0 else None, subject)
    for n, (repo, tag, kind, subject) in enumerate([
        ("team/app", "v1.2.0", "image", None), ("team/app", "v1.2.1", "image", None),
        ("team/app", "v1.3.0-rc.1", "image", None), ("team/app", "sha-0a1b2c", "image", None),
        ("team/app", "latest", "image", None), ("team/tools/cli", "2.0.0", "app", None),
        ("team/app", "sha256-00.sig", "signature", f"sha256:{1:064x}"), ("other/x", "main", "artifact", None)]))


@target("retention", (RetentionError,))
def retention_documents(data: bytes) -> None:
    """Retention policies and immutable-tag rules as tenant admins send them (hub.retention): a
    document is refused with RetentionError or evaluates over a fixed set of tags, each tag getting
    exactly one verdict, and an immutable tag is never deleted."""
    try:
        doc = safejson.loads(data)
    except ValueError:
        return
    immutable = ()
    if isinstance(doc, dict) and "immutable" in doc:
        immutable = parse_immutable_rules(doc.pop("immutable"))
    policy = parse_policy(doc)
    plan = evaluate(policy, _RETENTION_TAGS, _RETENTION_NOW, immutable=immutable)
    assert len(plan.tags) == len(_RETENTION_TAGS) and {v.record for v in plan.tags} == set(_RETENTION_TAGS), plan
    for verdict in plan.tags:
        assert verdict.action in (KEEP, DELETE, PROTECT), verdict
        if protects(immutable, verdict.record.repository, verdict.record.tag):
            assert verdict.action == PROTECT, verdict
    if not any(rule_set.rules for rule_set in (policy.default, *(o.rules for o in policy.overrides))) and not immutable:
        assert all(v.action != DELETE for v in plan.tags), plan


# --------------------------------------------------------------------------- webhook subscriptions

from hub.db.event_store import matches  # noqa: E402
from hub.events import cloudevents  # noqa: E402
from hub.events.netguard import ForbiddenDestination, address_allowed, check_literal, literal, parse_url  # noqa: E402
from hub.events.service import check_event_types  # noqa: E402
from hub.handlers.admin.schemas import validate as validate_body  # noqa: E402
from hub.problems import ValidationFailed  # noqa: E402

_WEBHOOK_REPOSITORIES = (None, "team/app", "team/a/b", "other/x", "")


@target("webhook", (ValidationFailed, ValueError, ForbiddenDestination))
def webhook_subscriptions(data: bytes) -> None:
    """A webhook subscription as a tenant admin sends it (POST .../webhooks): the schema, the URL's
    form and literal address (hub.events.netguard; no DNS here), the event-type globs, then the
    filters over every event type and a few repositories. An accepted URL is http(s) with a host
    and no credentials; an accepted IP literal is a global address; matching never raises."""
    try:
        body = safejson.loads(data)
    except ValueError:
        return
    validate_body(body, "WebhookCreate")
    url = parse_url(body["url"])
    assert url.scheme in ("http", "https") and url.host and url.user is None and url.password is None, url
    check_literal(url, ())
    ip = literal(url.host)
    assert ip is None or address_allowed(ip, ()), ip
    types, repos = body.get("event_types", []), body.get("repositories", [])
    check_event_types(types)
    for event_type in cloudevents.EVENT_TYPES:
        for repository in _WEBHOOK_REPOSITORIES:
            assert matches(event_type, repository, types, repos) in (True, False)
    if not types and not repos:
        assert all(matches(t, "team/app", (), ()) for t in cloudevents.EVENT_TYPES)
