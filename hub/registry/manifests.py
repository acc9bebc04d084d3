"""Manifest parsing and validation, independent of storage and HTTP."""

from __future__ import annotations

import base64
import binascii
import dataclasses
from typing import Any

from .. import safejson
from ..errors import DigestInvalid, ManifestInvalid
from . import mediatypes as mt
from .names import parse_digest


@dataclasses.dataclass(frozen=True, slots=True)
class ParsedManifest:
    media_type: str
    blob_refs: tuple[str, ...]
    manifest_refs: tuple[str, ...]
    subject: str | None
    artifact_type: str | None
    annotations: dict[str, str] | None
    # The size each descriptor gives for the blobs and child manifests referenced.
    ref_sizes: dict[str, int] = dataclasses.field(default_factory=dict)


# Descriptor sizes are int64 in the image spec: Go clients cannot read anything larger.
MAX_SIZE = (1 << 63) - 1


def _invalid(message: str, **detail: Any) -> ManifestInvalid:
    return ManifestInvalid(message, detail=detail or None)


def _descriptor(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _invalid(f"{where}: descriptor must be an object")
    media_type = value.get("mediaType")
    if not isinstance(media_type, str) or not media_type:
        raise _invalid(f"{where}: descriptor needs a mediaType")
    digest = value.get("digest")
    if not isinstance(digest, str):
        raise _invalid(f"{where}: descriptor needs a digest")
    try:
        parsed = parse_digest(digest)
    except DigestInvalid as exc:
        raise _invalid(f"{where}: {exc.message}") from None
    size = value.get("size")
    if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= MAX_SIZE:
        raise _invalid(f"{where}: descriptor size must be an integer from 0 to 2^63-1")
    data = value.get("data")
    if data is not None:
        if not isinstance(data, str):
            raise _invalid(f"{where}: data must be base64")
        try:
            raw = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise _invalid(f"{where}: data is not valid base64") from None
        hasher = parsed.hasher()
        hasher.update(raw)
        if len(raw) != size or hasher.hexdigest() != parsed.hex:
            raise _invalid(f"{where}: data does not match the descriptor's digest and size")
    annotations = value.get("annotations")
    if annotations is not None and not _is_string_map(annotations):
        raise _invalid(f"{where}: annotations must map strings to strings")
    return value


def _is_string_map(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())


def parse_manifest(content: bytes, content_type: str | None) -> ParsedManifest:
    """Validate a manifest body and extract what the store needs. Raises ManifestInvalid."""
    try:
        doc = safejson.loads(content)
    except safejson.JsonTooDeep as exc:
        raise _invalid(f"manifest is not valid JSON: {exc}") from None
    except ValueError:  # UnicodeDecodeError too
        raise _invalid("manifest is not valid JSON") from None
    if not isinstance(doc, dict):
        raise _invalid("manifest must be a JSON object")

    schema_version = doc.get("schemaVersion")
    if schema_version == 1 or content_type in (mt.DOCKER_SCHEMA1, mt.DOCKER_SCHEMA1_SIGNED):
        raise _invalid("Docker schema 1 manifests are not supported; push schema 2 or OCI")
    if schema_version != 2 or isinstance(schema_version, bool):
        raise _invalid("schemaVersion must be 2")

    header_type = (content_type or "").split(";", 1)[0].strip().lower()
    if header_type in mt.GENERIC_CONTENT_TYPES:
        header_type = ""
    body_type = doc.get("mediaType")
    if body_type is not None and not isinstance(body_type, str):
        raise _invalid("mediaType must be a string")
    if body_type and header_type and body_type != header_type:
        raise _invalid("Content-Type does not match the manifest's mediaType",
                       content_type=header_type, media_type=body_type)
    media_type = body_type or header_type
    if not media_type:
        if "manifests" in doc:
            media_type = mt.OCI_INDEX
        elif "config" in doc:
            media_type = mt.OCI_MANIFEST
    if media_type not in mt.MANIFEST_TYPES:
        raise _invalid(f"unsupported manifest media type: {media_type!r}", media_type=media_type)

    artifact_type = doc.get("artifactType")
    if artifact_type is not None and (not isinstance(artifact_type, str) or not artifact_type):
        raise _invalid("artifactType must be a non-empty string")
    annotations = doc.get("annotations")
    if annotations is not None and not _is_string_map(annotations):
        raise _invalid("annotations must map strings to strings")

    subject = None
    if doc.get("subject") is not None:
        subject = _descriptor(doc["subject"], "subject")["digest"]

    blob_refs: list[str] = []
    manifest_refs: list[str] = []
    sizes: dict[str, int] = {}

    def sized(descriptor: dict[str, Any], where: str) -> str:
        digest, size = descriptor["digest"], descriptor["size"]
        if sizes.setdefault(digest, size) != size:
            raise _invalid(f"{where}: {digest} is given two sizes", digest=digest,
                           sizes=[sizes[digest], size])
        return digest
    if media_type in mt.IMAGE_MANIFESTS:
        if "manifests" in doc:
            raise _invalid("an image manifest must not have 'manifests'")
        config = _descriptor(doc.get("config"), "config")
        blob_refs.append(sized(config, "config"))
        layers = doc.get("layers", [])
        if not isinstance(layers, list):
            raise _invalid("layers must be an array")
        for i, layer in enumerate(layers):
            layer = _descriptor(layer, f"layers[{i}]")
            if not mt.is_non_distributable(layer["mediaType"]):
                blob_refs.append(sized(layer, f"layers[{i}]"))
        if artifact_type is None and media_type == mt.OCI_MANIFEST:
            artifact_type = config["mediaType"]
        if media_type == mt.DOCKER_MANIFEST and doc.get("artifactType") is not None:
            raise _invalid("artifactType is not allowed in a Docker manifest")
    else:
        if "config" in doc or "layers" in doc:
            raise _invalid("an index must not have 'config' or 'layers'")
        children = doc.get("manifests")
        if not isinstance(children, list):
            raise _invalid("an index needs a 'manifests' array")
        for i, child in enumerate(children):
            child = _descriptor(child, f"manifests[{i}]")
            platform = child.get("platform")
            if platform is not None and not isinstance(platform, dict):
                raise _invalid(f"manifests[{i}]: platform must be an object")
            manifest_refs.append(sized(child, f"manifests[{i}]"))

    return ParsedManifest(
        media_type=media_type,
        blob_refs=tuple(dict.fromkeys(blob_refs)),
        manifest_refs=tuple(dict.fromkeys(manifest_refs)),
        subject=subject,
        artifact_type=artifact_type,
        annotations=annotations,
        ref_sizes=sizes,
    )
