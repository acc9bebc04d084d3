"""The catalog index: what the registry's push path records of each app artifact.

`CatalogIndexer` is a manifest hook of the registry (hub.registry.service.ManifestHook): when a
manifest of the compose project type is pushed, by DaoHub's publish API or by any OCI client, it
reads the artifact's compose and metadata layers (size-checked before a byte is read), checks
them, and once the manifest is stored, records one index row per tag in the metadata store. Rows
go with their tag or manifest by the store's cascades, so a delete needs no hook.

Two kinds of artifact are indexed:

* DaoHub's, with a metadata layer: the layer must be a valid metadata document
  (appstore.model.load_metadata) naming exactly the compose files the artifact carries, else the
  push is refused with MANIFEST_INVALID: whoever pushed it meant to publish an app;
* a plain `docker compose publish` artifact, without one: it is indexed with defaults (key and
  title from the repository name, the compose file's top-level `name` or the manifest's title
  annotation, no parameters). It is never refused for what DaoHub cannot read in it; a compose
  file that is not even YAML is simply not indexed.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hub.db.base import AppIndexEntry
from hub.errors import BlobUnknown, ManifestInvalid

from . import artifact, interpolate, model, render, yamlsafe
from .errors import AppStoreError
from .markdown import plain_text

log = logging.getLogger("daohub.appstore")

SUMMARY_CHARS = 300
_KEY_CHARS = re.compile(r"[^a-z0-9-]+")


@dataclass(frozen=True, slots=True)
class IndexedApp:
    """An app version rebuilt from its index document."""

    app: model.App
    version: model.AppVersion
    has_metadata: bool
    icon_name: str | None


def version_tag(version: str) -> str:
    """The tag a version is published under: '+' (build metadata) is not allowed in a tag."""
    return version.replace("+", "_")


def default_key(repository: str) -> str:
    """An app key from the repository's last path component (a DNS label)."""
    last = repository.rsplit("/", 1)[-1].lower()
    key = _KEY_CHARS.sub("-", last).strip("-")[:63].strip("-")
    return key or "app"


def summary_of(description: str) -> str:
    """The index's summary of a Markdown description: plain text (appstore.markdown.plain_text),
    which cards show and search matches as it is."""
    return plain_text(description, SUMMARY_CHARS)


def _compose_name(files: tuple[tuple[str, str], ...]) -> str:
    """The top-level `name:` of the first compose file, if it is a plain string."""
    try:
        doc = yamlsafe.load(files[0][1])
    except AppStoreError:
        return ""
    name = doc.get("name") if isinstance(doc, dict) else None
    return name.strip()[:100] if isinstance(name, str) and "$" not in name and "\n" not in name else ""


def document_for(found: artifact.AppArtifact, repository: str, tag: str) -> tuple[dict[str, Any], model.App,
                                                                                    model.AppVersion]:
    """The index document of an artifact and the app it describes. Raises AppStoreError (a bad
    metadata layer) or artifact.ArtifactInvalid."""
    files = dict(found.compose_files)
    if found.metadata is not None:
        app, version = model.load_metadata(found.metadata, files)
        if list(version.compose_files) != list(files):
            raise artifact.ArtifactInvalid("the metadata's composeFiles must name the artifact's compose files, "
                                           "in order", "metadata.version.composeFiles")
        if app.icon and not model.is_safe_url(app.icon) and found.icon is None:
            raise artifact.ArtifactInvalid(f"the metadata names icon {app.icon!r} but the artifact has no icon "
                                           "layer", "metadata.app.icon")
        render.check_template(version)  # what the publish API checks, for artifacts pushed by any client
    else:
        used: dict[str, None] = {}
        for name, text in found.compose_files:
            try:
                used.update(dict.fromkeys(interpolate.variables(yamlsafe.load(text))))
            except AppStoreError as exc:
                raise artifact.ArtifactInvalid(f"compose file {name!r}: {exc.summary()}", name) from None
        title = (found.annotations.get(artifact.TITLE) or _compose_name(found.compose_files)
                 or repository.rsplit("/", 1)[-1])
        app = model.App(key=default_key(repository), title=title[:100],
                        description=found.annotations.get(artifact.DESCRIPTION, "")[:20_000])
        # Every variable the template uses becomes an optional string parameter: Compose's own
        # defaults (`${PORT:-8080}`) then apply when the user leaves it empty.
        version = model.AppVersion(version=tag, compose_files=files,
                                   parameters=tuple(model.Parameter(name=n, label=n) for n in used))
    document = {"metadata": found.metadata, "compose": [list(item) for item in found.compose_files],
                "icon_name": found.icon_name,
                "annotations": {k: v for k, v in found.annotations.items() if k in (artifact.TITLE, artifact.DESCRIPTION)}}
    return document, app, version


def read_document(document: str | Mapping[str, Any], repository: str, tag: str) -> IndexedApp:
    """Rebuild the app version from an index row's document (written by `document_for`)."""
    doc = json.loads(document) if isinstance(document, str) else document
    files = {name: text for name, text in doc["compose"]}
    if doc.get("metadata") is not None:
        app, version = model.load_metadata(doc["metadata"], files)
        return IndexedApp(app, version, True, doc.get("icon_name"))
    found = artifact.AppArtifact(tuple((n, t) for n, t in doc["compose"]), None, None, doc.get("icon_name"),
                                 doc.get("annotations") or {})
    _, app, version = document_for(found, repository, tag)
    return IndexedApp(app, version, False, doc.get("icon_name"))


def index_entry(document: dict[str, Any], app: model.App, version: model.AppVersion,
                icon: artifact.Descriptor | None) -> AppIndexEntry:
    return AppIndexEntry(
        app_key=app.key, title=app.title, summary=summary_of(app.description), categories=app.categories,
        version=version.version, document=json.dumps(document, separators=(",", ":"), ensure_ascii=False),
        icon_digest=icon.digest if icon is not None else None,
        icon_media_type=icon.media_type if icon is not None else None)


@dataclass(frozen=True, slots=True)
class _Prepared:
    document: dict[str, Any]
    app: model.App
    version: model.AppVersion
    icon: artifact.Descriptor | None


class CatalogIndexer:
    """The registry's manifest hook that keeps the catalog index (see the module docstring)."""

    def __init__(self, registry):
        self.registry = registry

    async def _read(self, repository: str, desc: artifact.Descriptor) -> bytes:
        blob = await self.registry.stat_blob(repository, desc.digest)
        if blob.size != desc.size:
            raise artifact.ArtifactInvalid("layer size does not match the stored blob", desc.digest)
        parts = []
        async for chunk in await self.registry.open_blob(blob):
            parts.append(chunk)
        return b"".join(parts)

    async def before_put(self, repository: str, content: bytes, parsed) -> _Prepared | None:
        if parsed.artifact_type != artifact.ARTIFACT_TYPE:
            return None
        doc = json.loads(content)  # parse_manifest has just parsed it
        try:
            layout = artifact.read_layout(doc)
            found = await artifact.load(layout, lambda d: self._read(repository, d))
            if layout.icon is not None:
                data = await self._read(repository, layout.icon)
                artifact.check_icon(data, layout.icon.media_type)
            document, app, version = document_for(found, repository, "")
        except BlobUnknown:
            return None  # the store reports the missing blobs (MANIFEST_BLOB_UNKNOWN)
        except (artifact.ArtifactInvalid, AppStoreError) as exc:
            if doc.get("layers") and any(isinstance(layer, dict) and layer.get("mediaType")
                                         == artifact.METADATA_MEDIA_TYPE for layer in doc["layers"]):
                detail = exc.errors if isinstance(exc, AppStoreError) else {exc.field: exc.message}
                raise ManifestInvalid("not a valid DaoHub app artifact", detail=detail) from None
            log.info("compose artifact pushed to %s is stored but not listed in the catalog: %s", repository, exc)
            return None
        return _Prepared(document, app, version, layout.icon)

    async def after_put(self, repository: str, digest: str, tags: list[str], state: _Prepared) -> None:
        store = self.registry.store
        for tag in tags:
            version = state.version
            if state.document.get("metadata") is None:
                version = dataclasses.replace(version, version=tag)
            entry = index_entry(state.document, state.app, version, state.icon)
            await store.index_app_version(repository, tag, digest, entry)
