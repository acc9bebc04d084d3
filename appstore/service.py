"""The app store's use cases, over the registry and its catalog index. No HTTP here.

Who sees what is the registry's rule, decided by auth.policy: an app lives in a repository, and
a caller sees it exactly when they may pull that repository (public repositories: everyone,
anonymous callers included). An app the caller may not see does not exist for them: every
read answers 404 Not Found, the same answer as for an app that really does not exist, so
nothing leaks. Changes need more: publishing needs push on the repository (401 anonymous, 403
otherwise), deprecating needs a maintainer or admin of the tenant, deleting a version needs the
delete action (as deleting its tag over OCI does); a caller who may see the app but lacks the
right gets 403.

A version is addressed by its tag: the version with '+' replaced by '_' for DaoHub's own
artifacts (tags cannot hold '+'), any tag for a plain `docker compose publish` artifact.

Errors are hub.problems (as in hub.tenancy.service): field-level ones list JSON pointers into
the request (`#/values/PORT`, `#/metadata/app/title`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from auth import policy
from auth.policy import Principal, RepositoryInfo, tenant_of
from auth.scopes import PUSH
from hub.db.base import AppVersionRecord
from hub.errors import Denied, OciError
from hub.problems import AuthenticationRequired, Conflict, Forbidden, NotFound, ValidationFailed
from hub.registry.names import NAME_RE, TAG_RE

from . import artifact, catalog, model, portainer, render, yamlsafe
from .errors import AppStoreError, ValuesError

MAX_PAGE = 500
MAX_QUERY_CHARS = 200


def _now() -> datetime:
    return datetime.now(UTC)


def _pointer(prefix: str, path: str) -> str:
    """A model error path (`app.title`, `version.parameters[1].name`) as a JSON pointer."""
    parts = [p for p in path.replace("[", ".").replace("]", "").split(".") if p]
    return "#/" + "/".join([prefix, *parts] if prefix else parts)


def field_problem(errors: Mapping[str, str], prefix: str = "", detail: str = "invalid input") -> ValidationFailed:
    """One 422 problem listing every field error."""
    items = [{"detail": message, "pointer": _pointer(prefix, path)} for path, message in errors.items()]
    summary = "; ".join(f"{p}: {m}" if p else m for p, m in list(errors.items())[:5])
    return ValidationFailed(f"{detail}: {summary}" if summary else detail, errors=items)


def semver_key(version: str) -> tuple:
    """Newest-first sorting for semantic versions, then other tags by name."""
    try:
        return (1, model.SemVer.parse(version))
    except ValueError:
        return (0, version)


@dataclasses.dataclass(frozen=True, slots=True)
class Upload:
    """What a publish request brings: compose files, the metadata document and an optional icon."""

    compose_files: tuple[tuple[str, str], ...]
    metadata: Any
    icon: artifact.Icon | None = None


IN_DAOHUB = "in DaoHub"  # ImageStatus.detail of an image this DaoHub serves


class AppStore:
    def __init__(self, registry, *, own_hosts: frozenset[str] = frozenset()):
        self.registry = registry
        self.store = registry.store
        # Registry hosts that mean "this DaoHub" in an image reference (for the image check).
        self.own_hosts = own_hosts

    # Visibility ------------------------------------------------------------------------------
    @staticmethod
    def _info(record: AppVersionRecord) -> RepositoryInfo:
        return RepositoryInfo(record.repository, tenant_of(record.repository), record.public)

    def _visible(self, principal: Principal, record: AppVersionRecord) -> bool:
        return policy.can_read(principal, self._info(record), _now())

    @staticmethod
    def _tenants(principal: Principal) -> frozenset[str] | None:
        """Tenants whose private repositories the caller may reach (None: all), for the index query."""
        if principal.is_platform_admin:
            return None
        if principal.robot is not None:
            return frozenset({principal.robot.tenant})
        return frozenset(principal.memberships)

    async def _versions(self, principal: Principal, repository: str) -> list[AppVersionRecord]:
        """Every indexed tag of an app the caller may see; NotFound if none."""
        if not NAME_RE.match(repository):
            raise NotFound("no such app")
        records = await self.store.app_versions_of(repository)
        if not records or not self._visible(principal, records[0]):
            raise NotFound("no such app")
        return records

    async def _record(self, principal: Principal, repository: str, tag: str) -> AppVersionRecord:
        if not NAME_RE.match(repository) or not TAG_RE.match(tag):
            raise NotFound("no such app version")
        record = await self.store.get_app_version(repository, tag)
        if record is None or not self._visible(principal, record):
            raise NotFound("no such app version")
        return record

    # Reading ---------------------------------------------------------------------------------
    async def list_apps(self, principal: Principal, *, query: str = "", category: str = "", tenant: str = "",
                        public_only: bool = False, limit: int = 50,
                        after: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
        """One page of the apps the caller may see: (summaries, the key after which the next page
        starts, or None). `query` matches key, title, summary and repository name (case-insensitive,
        all words); `category` one category exactly (case-insensitive)."""
        if len(query) > MAX_QUERY_CHARS:
            raise ValidationFailed.parameter("q", f"at most {MAX_QUERY_CHARS} characters")
        words = query.lower().split()
        wanted_category = category.strip().lower()
        tenants = frozenset() if public_only else self._tenants(principal)
        kept: list[dict[str, Any]] = []
        batch = min(max(limit + 1, 16), MAX_PAGE + 1)
        while True:
            rows = await self.store.list_app_versions(batch, after, tenants=tenants, tenant=tenant or None)
            groups = _group(rows)
            for repository, records in groups:
                if public_only and not records[0].public:
                    continue
                if not self._visible(principal, records[0]):
                    continue
                latest = _latest(_dedupe(records))
                if wanted_category and wanted_category not in (c.lower() for c in latest.categories):
                    continue
                text = f"{latest.app_key} {latest.title} {latest.summary} {repository}".lower()
                if not all(word in text for word in words):
                    continue
                kept.append(summary_json(latest, records))
                if len(kept) > limit:
                    return kept[:limit], kept[limit - 1]["repository"]
            if len(groups) < batch:
                return kept, None
            after = groups[-1][0]

    async def categories(self, principal: Principal) -> list[dict[str, Any]]:
        """Every category of the apps the caller may see, with its app count."""
        counts: dict[str, int] = {}
        after = None
        while True:
            page, after = await self.list_apps(principal, limit=MAX_PAGE, after=after)
            for app in page:
                for category in app["categories"]:
                    counts[category] = counts.get(category, 0) + 1
            if after is None:
                return [{"name": name, "apps": n} for name, n in sorted(counts.items(), key=lambda i: i[0].lower())]

    async def app(self, principal: Principal, repository: str) -> dict[str, Any]:
        records = await self._versions(principal, repository)
        versions = _dedupe(records)
        latest = _latest(versions)
        full = await self.store.get_app_version(repository, latest.tag)
        if full is None:  # deleted in between
            raise NotFound("no such app")
        indexed = catalog.read_document(full.document, repository, full.tag)
        body = summary_json(latest, records)
        body.update(app_json(indexed.app))
        body["versions"] = [version_summary_json(r, records) for r in versions]
        return body

    async def abilities(self, principal: Principal, repository: str) -> dict[str, bool]:
        """What the caller may do to an app it sees (the rules of publish, set_deprecated and
        delete_version), so pages offer only those actions: publish, deprecate, delete."""
        records = await self._versions(principal, repository)
        info = self._info(records[0])
        signed_in = principal.is_authenticated(_now())
        return {"publish": signed_in and PUSH in policy.allowed_actions(principal, info, _now()),
                "deprecate": signed_in and policy.can_administer_repository(principal, info),
                "delete": signed_in and policy.can_delete(principal, info, _now())}

    async def changelog(self, principal: Principal, repository: str, limit: int = 50) -> list[dict[str, Any]]:
        """The newest `limit` versions of an app, newest first, each with its release notes."""
        records = await self._versions(principal, repository)
        out = []
        for record in _dedupe(records)[:limit]:
            full = await self.store.get_app_version(repository, record.tag)
            if full is None:  # deleted in between
                continue
            notes = catalog.read_document(full.document, repository, full.tag).version.release_notes
            out.append({**version_summary_json(record, records), "release_notes": notes})
        return out

    async def version(self, principal: Principal, repository: str, tag: str) -> dict[str, Any]:
        record = await self._record(principal, repository, tag)
        indexed = catalog.read_document(record.document, repository, tag)
        body = {"repository": repository, "tenant": tenant_of(repository), "tag": tag, "digest": record.digest,
                "deprecated": record.deprecated, "public": record.public, "has_metadata": indexed.has_metadata,
                "icon": icon_path(record), **app_json(indexed.app)}
        body.update(version_json(indexed.version))
        body["deprecated"] = record.deprecated
        body["compose_environment"] = render.compose_environment(indexed.version)
        return body

    async def indexed_version(self, principal: Principal, repository: str,
                              tag: str | None = None) -> catalog.IndexedApp:
        """A published version (default: the latest) as the model has it, to render it
        (`daohub app render REPO:VERSION`)."""
        if tag is None:
            tag = _latest(_dedupe(await self._versions(principal, repository))).tag
        record = await self._record(principal, repository, tag)
        return catalog.read_document(record.document, repository, tag)

    async def draft(self, principal: Principal, repository: str,
                    tag: str | None = None) -> tuple[dict[str, Any], list[tuple[str, str]], str | None]:
        """A version (default: the latest) as the start of the next one: (its metadata document,
        its compose files, the icon's file name or None). For the web catalog's publish form."""
        if tag is None:
            tag = _latest(_dedupe(await self._versions(principal, repository))).tag
        record = await self._record(principal, repository, tag)
        indexed = catalog.read_document(record.document, repository, tag)
        authored = render.without_compose_defaults(indexed.version)
        return (model.dump_metadata(indexed.app, indexed.version), list(authored.compose_files.items()),
                indexed.icon_name if record.icon_digest else None)

    async def icon(self, principal: Principal, repository: str, tag: str | None = None) -> tuple[bytes, str, str]:
        """(bytes, media type, digest) of the icon of a version (default: the latest)."""
        if tag is None:
            record = _latest(_dedupe(await self._versions(principal, repository)))
        else:
            record = await self._record(principal, repository, tag)
        if record.icon_digest is None or record.icon_media_type not in artifact.ICON_MEDIA_TYPES:
            raise NotFound("this app version has no icon")
        try:
            blob = await self.registry.stat_blob(repository, record.icon_digest)
            if blob.size > artifact.MAX_ICON_BYTES:
                raise NotFound("this app version has no icon")
            data = b"".join([chunk async for chunk in await self.registry.open_blob(blob)])
        except OciError:
            raise NotFound("this app version has no icon") from None
        return data, record.icon_media_type, record.icon_digest

    async def render(self, principal: Principal, repository: str, tag: str, values: Any) -> dict[str, Any]:
        """Validate `values`, render the version's compose text and check its images."""
        record = await self._record(principal, repository, tag)
        if not isinstance(values, dict):
            raise ValidationFailed.field("values", "must be an object of parameter values")
        indexed = catalog.read_document(record.document, repository, tag)
        try:
            result = render.render(indexed.version, values)
        except ValuesError as exc:
            raise field_problem(exc.errors, "values", "the values are not valid") from None
        except AppStoreError as exc:
            raise field_problem(exc.errors, "", "the values do not render a valid compose file") from None
        checked = await render.check_images(result.images, lambda ref: self.check_image(principal, ref))
        return {"repository": repository, "tag": tag, "compose": result.text,
                "images": [{"image": ref.normalized, "services": list(ref.services),
                            "in_daohub": status.detail == IN_DAOHUB, "exists": status.exists,
                            "pullable": status.pullable} for ref, status in checked]}

    async def check_image(self, principal: Principal, ref: render.ImageRef) -> render.ImageStatus:
        """render.ImageChecker: is the image in this DaoHub, may the caller pull it, and does it
        exist? Whether it exists is told only to a caller who may pull it (else None), so the
        check reveals no private repository. Images elsewhere: (None, None)."""
        if ref.registry.lower() not in self.own_hosts:
            return render.ImageStatus(None, None, "")
        name = ref.repository
        if not NAME_RE.match(name):
            return render.ImageStatus(False, False, IN_DAOHUB)
        public = name in await self.store.public_repositories([name])
        if not policy.can_read(principal, RepositoryInfo(name, tenant_of(name), public), _now()):
            return render.ImageStatus(None, False, IN_DAOHUB)
        reference = ref.digest or ref.tag or "latest"
        record = await self.store.get_manifest(name, reference, by_digest=ref.digest is not None,
                                               with_content=False)
        return render.ImageStatus(record is not None, True, IN_DAOHUB)

    async def apps_for_export(self, principal: Principal, *, tenant: str = "",
                              public_only: bool = False) -> list[tuple[dict[str, Any], model.App]]:
        """Every visible app with its latest version as a model App (for the Portainer feed)."""
        out = []
        after = None
        while True:
            page, after = await self.list_apps(principal, tenant=tenant, public_only=public_only, limit=MAX_PAGE,
                                               after=after)
            for summary in page:
                record = await self.store.get_app_version(summary["repository"], summary["latest_tag"])
                if record is None:
                    continue
                indexed = catalog.read_document(record.document, record.repository, record.tag)
                version = indexed.version
                if semver_key(version.version)[0] == 0:
                    # A plain artifact's tag ("latest", "v2"): exporters order versions by semver.
                    version = dataclasses.replace(version, version="0.0.0")
                out.append((summary, dataclasses.replace(indexed.app, versions=(version,))))
            if after is None:
                return out

    # Changing --------------------------------------------------------------------------------
    async def publish(self, principal: Principal, repository: str, upload: Upload) -> dict[str, Any]:
        """Build the artifact and push it through the registry as the caller; the push path
        indexes it. An existing version is not overwritten (409): delete it first."""
        self._signed_in(principal, "publish an app")
        if not isinstance(repository, str) or not NAME_RE.match(repository) or tenant_of(repository) is None:
            raise ValidationFailed.field("repository", "must be a repository name <tenant>/<path>")
        public = repository in await self.store.public_repositories([repository])
        info = RepositoryInfo(repository, tenant_of(repository), public)
        if PUSH not in policy.allowed_actions(principal, info, _now()):
            raise Forbidden("you may not push to this repository")
        files = dict(upload.compose_files)
        errors: dict[str, str] = {}
        for i, (_, text) in enumerate(upload.compose_files):
            try:
                yamlsafe.load(text)
            except AppStoreError as exc:
                errors[f"compose_files[{i}].content"] = exc.summary()
        if errors:
            raise field_problem(errors, "", "the compose file is not valid YAML")
        try:
            app, version = model.load_metadata(upload.metadata, files)
        except AppStoreError as exc:
            raise field_problem(exc.errors, "metadata", "the metadata document is invalid") from None
        try:
            render.check_template(version)
            version = render.with_compose_defaults(version)
        except AppStoreError as exc:
            raise ValidationFailed("the compose template does not render with its parameters' defaults",
                                   errors=[{"detail": f"{path}: {message}" if path else message,
                                            "pointer": "#/compose_files"}
                                           for path, message in exc.errors.items()]) from None
        icon = upload.icon
        if app.icon and not model.is_safe_url(app.icon):
            if icon is None:
                raise ValidationFailed.field("icon", f"the metadata names icon {app.icon!r}: upload that file")
            if icon.name != app.icon:
                raise ValidationFailed.field("icon", f"the uploaded file is {icon.name!r}, the metadata names "
                                                     f"{app.icon!r}")
        elif icon is not None:
            raise ValidationFailed.field("icon", "the metadata's app.icon does not name the uploaded file")
        if icon is not None:
            problem = model.check_icon_data(icon.name, icon.data)
            if problem:
                raise ValidationFailed.field("icon", problem)
        tag = catalog.version_tag(version.version)
        try:
            packed = artifact.pack(list(version.compose_files.items()), model.dump_metadata(app, version), icon,
                                   title=app.title, version=version.version, description=catalog.summary_of(
                                       app.description))
        except artifact.ArtifactInvalid as exc:
            raise ValidationFailed.field(exc.field.replace(".", "/") or "compose", exc.message) from None
        existing = await self.store.get_manifest(repository, tag, by_digest=False, with_content=False)
        if existing is not None and existing.digest != packed.digest:
            raise Conflict(f"version {version.version} is already published in {repository}; delete it first")
        try:
            for blob in packed.blobs:
                if await self.store.get_blob_size(repository, blob.digest) is None:
                    await self.registry.monolithic_upload(repository, blob.digest, _once(blob.data),
                                                          content_length=len(blob.data))
            await self.registry.put_manifest(repository, tag, packed.manifest, packed.media_type)
        except Denied as exc:  # the tenant's storage quota, with its numbers
            raise Forbidden(exc.message) from None
        return await self.version(principal, repository, tag)

    async def import_portainer(self, principal: Principal, tenant: str, feed: Any, *,
                               only: list[str] | None = None, dry_run: bool = False) -> list[dict[str, Any]]:
        """Import a Portainer template feed (v2 or v3) into `tenant`: each template becomes the app
        `<tenant>/<key>`, version 1.0.0 (appstore.portainer). With `dry_run`, nothing is written:
        the answer is the preview. `only` limits the import to those keys.

        Tenant admins (and the platform admin) import. One item per template, in feed order:
        key, title, repository, kind, parameters, compose (the template DaoHub would publish) and
        status: "new" (dry run) or "published"; "exists" (that version is there with the same or
        other content: never replaced); "skipped" (a stack whose compose file lives in a git
        repository, which DaoHub does not fetch; or left out by `only`); "invalid", with `errors`;
        "failed" (refused when published: the tenant's quota).
        """
        self._signed_in(principal, "import apps")
        if not isinstance(tenant, str) or not NAME_RE.match(f"{tenant}/x") or "/" in tenant:
            raise ValidationFailed.field("tenant", "must be a tenant name")
        if not policy.can_manage_tenant(principal, tenant, policy.Manage.SETTINGS):
            if policy.can_view_tenant(principal, tenant):
                raise Forbidden(f"only an admin of tenant {tenant!r} imports apps into it")
            raise NotFound(f"no tenant {tenant!r}")  # an outsider learns nothing of it
        if await self.store.get_tenant(tenant) is None:
            raise NotFound(f"no tenant {tenant!r}")
        try:
            read = portainer.read_feed(feed)
        except AppStoreError as exc:
            raise field_problem(exc.errors, "feed", "this is not a Portainer template feed") from None
        wanted = set(only) if only is not None else None
        out: list[dict[str, Any]] = []
        for i, (app, errors) in enumerate(read):
            template = feed["templates"][i] if isinstance(feed["templates"][i], dict) else {}
            item: dict[str, Any] = {"index": i, "title": str(template.get("title") or ""),
                                    "kind": portainer.TEMPLATE_TYPES.get(template.get("type", 1), "unknown")
                                    if type(template.get("type", 1)) is int else "unknown"}
            out.append(item)
            if app is None:
                item.update(key="", repository="", parameters=[], compose="", status="invalid",
                            errors=[f"{path.removeprefix(f'templates[{i}]').lstrip('.') or 'template'}: {message}"
                                    for path, message in errors.items()])
                continue
            version = app.versions[0]
            compose = next(iter(version.compose_files.values()), "")
            repository = f"{tenant}/{app.key}"
            item.update(key=app.key, title=app.title, repository=repository, compose=compose,
                        parameters=[p.name for p in version.parameters], errors=[])
            if not compose.strip():
                repo = template.get("repository") if isinstance(template.get("repository"), dict) else {}
                item.update(status="skipped", errors=[
                    "a stack template: its compose file is in the git repository "
                    f"{str(repo.get('url') or '(none given)')[:200]}, which DaoHub does not fetch; "
                    "publish it with the publishing form instead"])
                continue
            if wanted is not None and app.key not in wanted:
                item["status"] = "skipped"
                item["errors"] = ["not chosen"]
                continue
            try:
                render.check_template(version)
            except AppStoreError as exc:
                item.update(status="invalid", errors=[f"{p}: {m}" if p else m for p, m in exc.errors.items()])
                continue
            tag = catalog.version_tag(version.version)
            if not NAME_RE.match(repository):
                item.update(status="invalid", errors=[f"{repository} is not a valid repository name"])
                continue
            if await self.store.get_manifest(repository, tag, by_digest=False, with_content=False) is not None:
                item["status"] = "exists"
                continue
            if dry_run:
                item["status"] = "new"
                continue
            upload = Upload((("compose.yaml", compose),), model.dump_metadata(app, version), None)
            try:
                await self.publish(principal, repository, upload)
            except Conflict:
                item["status"] = "exists"
            except ValidationFailed as problem:
                item.update(status="invalid", errors=[e.get("detail", "") for e in problem.errors or []]
                            or [problem.detail])
            except Forbidden as problem:  # the tenant's storage quota: the others may still fit
                item.update(status="failed", errors=[problem.detail])
            else:
                item["status"] = "published"
        return out

    @staticmethod
    def _signed_in(principal: Principal, doing: str) -> None:
        if not principal.is_authenticated(_now()):
            raise AuthenticationRequired(f"sign in to {doing}")

    async def set_deprecated(self, principal: Principal, repository: str, tag: str,
                             deprecated: bool) -> dict[str, Any]:
        self._signed_in(principal, "deprecate an app version")
        record = await self._record(principal, repository, tag)
        if not policy.can_administer_repository(principal, self._info(record)):
            raise Forbidden("only a maintainer or admin of the tenant deprecates an app version")
        if not await self.store.set_app_version_deprecated(repository, tag, deprecated):
            raise NotFound("no such app version")
        return await self.version(principal, repository, tag)

    async def delete_version(self, principal: Principal, repository: str, tag: str) -> None:
        """Delete the version's manifest, with every tag that points at it (what
        `DELETE /v2/<name>/manifests/<digest>` does): it leaves the catalog at once, and its blobs
        are left to GC."""
        self._signed_in(principal, "delete an app version")
        record = await self._record(principal, repository, tag)
        if not policy.can_delete(principal, self._info(record), _now()):
            raise Forbidden("you may not delete from this repository")
        if not await self.store.delete_manifest(repository, record.digest):
            raise NotFound("no such app version")


async def _once(data: bytes):
    yield data


def _group(rows: list[AppVersionRecord]) -> list[tuple[str, list[AppVersionRecord]]]:
    groups: dict[str, list[AppVersionRecord]] = {}
    for row in rows:
        groups.setdefault(row.repository, []).append(row)
    return list(groups.items())


def _dedupe(records: list[AppVersionRecord]) -> list[AppVersionRecord]:
    """One record per manifest (several tags may point at one), newest version first. The tag
    named after the version wins, then a semantic-version tag, then the first."""
    by_digest: dict[str, list[AppVersionRecord]] = {}
    for record in records:
        by_digest.setdefault(record.digest, []).append(record)
    chosen = []
    for group in by_digest.values():
        group.sort(key=lambda r: (r.tag != catalog.version_tag(r.version), semver_key(r.tag)[0] == 0, r.tag))
        chosen.append(group[0])
    return sorted(chosen, key=lambda r: (semver_key(r.version), r.tag), reverse=True)


def _latest(records: list[AppVersionRecord]) -> AppVersionRecord:
    """The newest release that is not deprecated, else the newest not deprecated, else the newest
    (`records` newest first)."""
    def release(r: AppVersionRecord) -> bool:
        key = semver_key(r.version)
        return key[0] == 1 and not key[1].is_prerelease

    for wanted in (lambda r: not r.deprecated and release(r), lambda r: not r.deprecated):
        for record in records:
            if wanted(record):
                return record
    return records[0]


# JSON shapes -----------------------------------------------------------------------------------
def icon_path(record: AppVersionRecord) -> str | None:
    if record.icon_digest is None:
        return None
    return f"/api/v1/appstore/apps/{record.repository}/versions/{record.tag}/icon"


def summary_json(latest: AppVersionRecord, records: list[AppVersionRecord]) -> dict[str, Any]:
    return {"repository": latest.repository, "tenant": tenant_of(latest.repository), "key": latest.app_key,
            "title": latest.title, "summary": latest.summary, "categories": list(latest.categories),
            "public": latest.public, "latest_version": latest.version, "latest_tag": latest.tag,
            "version_count": len(_dedupe(records)), "deprecated": all(r.deprecated for r in records),
            "icon": icon_path(latest)}


def version_summary_json(record: AppVersionRecord, records: list[AppVersionRecord]) -> dict[str, Any]:
    key = semver_key(record.version)
    return {"version": record.version, "tag": record.tag, "digest": record.digest,
            "tags": sorted(r.tag for r in records if r.digest == record.digest),
            "deprecated": record.deprecated, "prerelease": key[0] == 1 and key[1].is_prerelease,
            "published_at": datetime.fromtimestamp(record.indexed_at, UTC).isoformat(timespec="seconds")
            .replace("+00:00", "Z")}


def app_json(app: model.App) -> dict[str, Any]:
    return {"key": app.key, "title": app.title, "description": app.description,
            "categories": list(app.categories), "maintainers": [m.to_dict() for m in app.maintainers],
            "website": app.website}


def version_json(version: model.AppVersion) -> dict[str, Any]:
    return {"version": version.version, "release_notes": version.release_notes,
            "parameters": [p.to_dict() for p in version.parameters],
            "compose_files": [{"name": name, "content": text} for name, text in version.compose_files.items()]}
