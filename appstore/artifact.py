"""An app version as an OCI artifact, shaped the way `docker compose publish` shapes one.

Layout (an OCI image manifest):

* ``artifactType`` ``application/vnd.docker.compose.project`` and the empty config
  (``application/vnd.oci.empty.v1+json``, the two bytes ``{}``), so ``docker compose -f oci://...``
  and any OCI client consume it unchanged;
* one layer per compose file, ``application/vnd.docker.compose.file+yaml``, annotated with
  ``com.docker.compose.file=<file name>``;
* DaoHub's metadata document (appstore.model's dict) as one layer of ``METADATA_MEDIA_TYPE``;
* the icon, if any, as one layer of an image media type, its file name in
  ``org.opencontainers.image.title`` (what oras records for a file);
* ``org.opencontainers.image.title`` / ``.version`` / ``.description`` on the manifest.

A plain `docker compose publish` artifact has no metadata layer; it is still an app, indexed
with defaults taken from its compose file and its repository's name (appstore.catalog).

Everything read back from a pushed artifact is untrusted: sizes are checked against the
descriptors *before* a blob is read, and again on the bytes; names are checked so that no
file name can climb out of a directory.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from hub import safejson

from . import model

ARTIFACT_TYPE = "application/vnd.docker.compose.project"
COMPOSE_MEDIA_TYPE = "application/vnd.docker.compose.file+yaml"
ENVFILE_MEDIA_TYPE = "application/vnd.docker.compose.envfile"
METADATA_MEDIA_TYPE = model.METADATA_MEDIA_TYPE
EMPTY_MEDIA_TYPE = "application/vnd.oci.empty.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
EMPTY_CONFIG = b"{}"

COMPOSE_FILE_ANNOTATION = "com.docker.compose.file"
TITLE = "org.opencontainers.image.title"
VERSION = "org.opencontainers.image.version"
DESCRIPTION = "org.opencontainers.image.description"

# The model's icon types (raster only: an SVG is a document that can carry script), by media type.
ICON_MEDIA_TYPES = {media_type: ext for ext, media_type in reversed(model.ICON_TYPES.items())}

MAX_COMPOSE_FILES = 8
MAX_COMPOSE_BYTES = 256 * 1024  # one compose file
MAX_TOTAL_COMPOSE_BYTES = 1024 * 1024
MAX_METADATA_BYTES = 256 * 1024
MAX_ICON_BYTES = model.ICON_MAX_BYTES
MAX_LAYERS = MAX_COMPOSE_FILES + 2 + 8  # compose files, metadata, icon, and a few env files
MAX_ANNOTATION_CHARS = 1024

# A file name, never a path: no separators, no leading dot (so neither "." nor ".." either).
_FILE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")


class ArtifactInvalid(ValueError):
    """The artifact (or what is to be packed) breaks the layout or a limit. `field` names what."""

    def __init__(self, message: str, field: str = ""):
        super().__init__(message)
        self.message = message
        self.field = field


def check_file_name(name: object, field: str = "name") -> str:
    """`name` if it is a plain file name (no directory part, no traversal), else ArtifactInvalid."""
    if not isinstance(name, str) or not _FILE_NAME.match(name):
        raise ArtifactInvalid("must be a plain file name: letters, digits, '.', '_' and '-', not starting "
                              "with '.' or '-', at most 128 characters", field)
    return name


def sniff_icon(data: bytes) -> str | None:
    """The image media type the bytes really are (by magic number), or None."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def check_icon(data: bytes, media_type: str | None = None, field: str = "icon") -> str:
    """The icon's media type after checking size, declared type and content agree."""
    if len(data) > MAX_ICON_BYTES:
        raise ArtifactInvalid(f"icon is larger than {MAX_ICON_BYTES} bytes", field)
    if not data:
        raise ArtifactInvalid("icon is empty", field)
    actual = sniff_icon(data)
    if actual is None:
        raise ArtifactInvalid(f"icon must be one of {', '.join(ICON_MEDIA_TYPES)}", field)
    if media_type is not None and media_type.split(";", 1)[0].strip().lower() != actual:
        raise ArtifactInvalid(f"icon content is {actual}, not the declared {media_type}", field)
    return actual


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclasses.dataclass(frozen=True, slots=True)
class Blob:
    media_type: str
    data: bytes
    annotations: Mapping[str, str] | None = None

    @property
    def digest(self) -> str:
        return _digest(self.data)

    def descriptor(self) -> dict[str, Any]:
        desc: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": len(self.data)}
        if self.annotations:
            desc["annotations"] = dict(self.annotations)
        return desc


@dataclasses.dataclass(frozen=True, slots=True)
class Icon:
    name: str
    data: bytes
    media_type: str


@dataclasses.dataclass(frozen=True, slots=True)
class PackedArtifact:
    manifest: bytes
    blobs: tuple[Blob, ...]  # the config first, then the layers in manifest order

    @property
    def digest(self) -> str:
        return _digest(self.manifest)

    media_type = OCI_MANIFEST


def metadata_bytes(metadata: Mapping[str, Any]) -> bytes:
    """The canonical encoding of a metadata document (so equal documents pack identically)."""
    return json.dumps(metadata, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _short(text: str) -> str:
    return text if len(text) <= MAX_ANNOTATION_CHARS else text[:MAX_ANNOTATION_CHARS - 1] + "…"


def pack(compose_files: Sequence[tuple[str, str | bytes]], metadata: Mapping[str, Any] | None = None,
         icon: Icon | None = None, *, title: str = "", version: str = "", description: str = "") -> PackedArtifact:
    """Build the artifact: the same input always gives the same manifest digest."""
    if not compose_files:
        raise ArtifactInvalid("at least one compose file is needed", "compose")
    if len(compose_files) > MAX_COMPOSE_FILES:
        raise ArtifactInvalid(f"at most {MAX_COMPOSE_FILES} compose files", "compose")
    layers: list[Blob] = []
    seen: set[str] = set()
    total = 0
    for i, (name, text) in enumerate(compose_files):
        check_file_name(name, f"compose[{i}].name")
        if name in seen:
            raise ArtifactInvalid(f"compose file {name!r} appears twice", f"compose[{i}].name")
        seen.add(name)
        data = text.encode() if isinstance(text, str) else bytes(text)
        if len(data) > MAX_COMPOSE_BYTES:
            raise ArtifactInvalid(f"compose file is larger than {MAX_COMPOSE_BYTES} bytes", f"compose[{i}]")
        total += len(data)
        layers.append(Blob(COMPOSE_MEDIA_TYPE, data, {COMPOSE_FILE_ANNOTATION: name}))
    if total > MAX_TOTAL_COMPOSE_BYTES:
        raise ArtifactInvalid(f"compose files exceed {MAX_TOTAL_COMPOSE_BYTES} bytes together", "compose")
    if metadata is not None:
        data = metadata_bytes(metadata)
        if len(data) > MAX_METADATA_BYTES:
            raise ArtifactInvalid(f"metadata is larger than {MAX_METADATA_BYTES} bytes", "metadata")
        layers.append(Blob(METADATA_MEDIA_TYPE, data))
    if icon is not None:
        check_file_name(icon.name, "icon.name")
        media_type = check_icon(icon.data, icon.media_type)
        layers.append(Blob(media_type, icon.data, {TITLE: icon.name}))
    annotations = {k: _short(v) for k, v in ((TITLE, title), (VERSION, version), (DESCRIPTION, description)) if v}
    config = Blob(EMPTY_MEDIA_TYPE, EMPTY_CONFIG)
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": ARTIFACT_TYPE,
        "config": config.descriptor(),
        "layers": [layer.descriptor() for layer in layers],
    }
    if annotations:
        manifest["annotations"] = annotations
    body = json.dumps(manifest, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return PackedArtifact(body, (config, *layers))


# Reading a pushed artifact --------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, slots=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    annotations: Mapping[str, str]


@dataclasses.dataclass(frozen=True, slots=True)
class Layout:
    """Which layer is what, from the manifest alone (no blob read yet)."""

    compose: tuple[tuple[str, Descriptor], ...]
    metadata: Descriptor | None
    icon: Descriptor | None
    icon_name: str | None
    annotations: Mapping[str, str]


@dataclasses.dataclass(frozen=True, slots=True)
class AppArtifact:
    compose_files: tuple[tuple[str, str], ...]
    metadata: dict[str, Any] | None  # None: a plain `docker compose publish` artifact
    icon: Descriptor | None
    icon_name: str | None
    annotations: Mapping[str, str]


def is_app_manifest(doc: Mapping[str, Any]) -> bool:
    """An app artifact declares the compose project type in `artifactType`, or, as clients from
    before OCI 1.1 do (oras-py among them), as the config's media type."""
    if "artifactType" in doc:
        return doc.get("artifactType") == ARTIFACT_TYPE
    config = doc.get("config")
    return isinstance(config, dict) and config.get("mediaType") == ARTIFACT_TYPE


def _descriptor(value: Any, where: str) -> Descriptor:
    # The registry validated descriptors already; this keeps the module safe on its own.
    if not isinstance(value, dict):
        raise ArtifactInvalid("descriptor must be an object", where)
    media_type, digest, size = value.get("mediaType"), value.get("digest"), value.get("size")
    annotations = value.get("annotations") or {}
    if (not isinstance(media_type, str) or not isinstance(digest, str) or isinstance(size, bool)
            or not isinstance(size, int) or size < 0 or not isinstance(annotations, dict)):
        raise ArtifactInvalid("malformed descriptor", where)
    return Descriptor(media_type, digest, size, annotations)


def read_layout(doc: Mapping[str, Any]) -> Layout:
    """Classify the layers of a compose-project manifest and check every size limit."""
    if not is_app_manifest(doc):
        raise ArtifactInvalid(f"artifactType is not {ARTIFACT_TYPE}", "artifactType")
    layers = doc.get("layers")
    if not isinstance(layers, list) or not layers:
        raise ArtifactInvalid("a compose project needs at least one layer", "layers")
    if len(layers) > MAX_LAYERS:
        raise ArtifactInvalid(f"at most {MAX_LAYERS} layers", "layers")
    compose: list[tuple[str, Descriptor]] = []
    metadata = icon = None
    icon_name = None
    total = 0
    for i, raw in enumerate(layers):
        where = f"layers[{i}]"
        desc = _descriptor(raw, where)
        media_type = desc.media_type.split(";", 1)[0].strip().lower()
        if media_type == COMPOSE_MEDIA_TYPE:
            key = COMPOSE_FILE_ANNOTATION if COMPOSE_FILE_ANNOTATION in desc.annotations else TITLE
            name = check_file_name(desc.annotations.get(key, f"compose-{i}.yaml"), f"{where}.annotations.{key}")
            if any(name == n for n, _ in compose):
                raise ArtifactInvalid(f"compose file {name!r} appears twice", where)
            if desc.size > MAX_COMPOSE_BYTES:
                raise ArtifactInvalid(f"compose file is larger than {MAX_COMPOSE_BYTES} bytes", where)
            total += desc.size
            compose.append((name, desc))
        elif media_type == METADATA_MEDIA_TYPE:
            if metadata is not None:
                raise ArtifactInvalid("more than one metadata layer", where)
            if desc.size > MAX_METADATA_BYTES:
                raise ArtifactInvalid(f"metadata is larger than {MAX_METADATA_BYTES} bytes", where)
            metadata = desc
        elif media_type in ICON_MEDIA_TYPES:
            if icon is not None:
                raise ArtifactInvalid("more than one icon layer", where)
            if desc.size > MAX_ICON_BYTES:
                raise ArtifactInvalid(f"icon is larger than {MAX_ICON_BYTES} bytes", where)
            icon_name = check_file_name(desc.annotations.get(TITLE, "icon" + ICON_MEDIA_TYPES[media_type]),
                                        f"{where}.annotations.{TITLE}")
            icon = dataclasses.replace(desc, media_type=media_type)
        # Env files and anything else ride along untouched: the catalog does not need them.
    if not compose:
        raise ArtifactInvalid("no compose file layer", "layers")
    if len(compose) > MAX_COMPOSE_FILES:
        raise ArtifactInvalid(f"at most {MAX_COMPOSE_FILES} compose files", "layers")
    if total > MAX_TOTAL_COMPOSE_BYTES:
        raise ArtifactInvalid(f"compose files exceed {MAX_TOTAL_COMPOSE_BYTES} bytes together", "layers")
    annotations = doc.get("annotations") or {}
    if not isinstance(annotations, dict):
        raise ArtifactInvalid("annotations must be an object", "annotations")
    return Layout(tuple(compose), metadata, icon, icon_name, annotations)


Fetch = Callable[[Descriptor], Awaitable[bytes]]


async def _fetch_checked(fetch: Fetch, desc: Descriptor, limit: int) -> bytes:
    data = await fetch(desc)
    if len(data) != desc.size or len(data) > limit or _digest(data) != desc.digest:
        raise ArtifactInvalid("layer content does not match its descriptor", desc.digest)
    return data


def _no_constants(token: str) -> Any:
    raise ValueError(f"{token} is not JSON")


def parse_metadata(data: bytes) -> dict[str, Any]:
    try:
        doc = safejson.loads(data.decode("utf-8"), parse_constant=_no_constants)
    except ValueError:  # UnicodeDecodeError, and JsonTooDeep: nesting is bounded before parsing
        raise ArtifactInvalid("metadata is not valid UTF-8 JSON", "metadata") from None
    if not isinstance(doc, dict):
        raise ArtifactInvalid("metadata must be a JSON object", "metadata")
    return doc


async def load(layout: Layout, fetch: Fetch) -> AppArtifact:
    """Read the compose files and the metadata (not the icon) through `fetch`, checking each."""
    files = []
    for name, desc in layout.compose:
        data = await _fetch_checked(fetch, desc, MAX_COMPOSE_BYTES)
        try:
            files.append((name, data.decode("utf-8")))
        except UnicodeDecodeError:
            raise ArtifactInvalid(f"compose file {name!r} is not UTF-8", name) from None
    metadata = None
    if layout.metadata is not None:
        metadata = parse_metadata(await _fetch_checked(fetch, layout.metadata, MAX_METADATA_BYTES))
    return AppArtifact(tuple(files), metadata, layout.icon, layout.icon_name, layout.annotations)


async def unpack(manifest: bytes, fetch: Fetch) -> AppArtifact:
    """Parse a manifest's bytes and load the app it carries."""
    try:
        doc = safejson.loads(manifest)
    except ValueError:
        raise ArtifactInvalid("manifest is not JSON", "manifest") from None
    if not isinstance(doc, dict):
        raise ArtifactInvalid("manifest must be an object", "manifest")
    return await load(read_layout(doc), fetch)
