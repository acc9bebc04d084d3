"""`daohub app ...`: the app store from the command line.

Each verb registers itself in `add_parsers` with a handler and whether it needs the loaded
configuration (`needs_config`); `run` dispatches. Verbs that work on files alone (render) run
without a config, so a broken `DAOHUB_*` environment does not stop them.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

EXIT_INVALID = 2


def add_parsers(sub) -> argparse._SubParsersAction:
    """Add the `app` group to the top-level subparsers; returns the group's own subparsers, so
    other modules can add verbs with `set_defaults(app_handler=..., needs_config=...)`."""
    app = sub.add_parser("app", help="app store: render app templates")
    verbs = app.add_subparsers(dest="verb", required=True)
    render = verbs.add_parser(
        "render", help="fill an app version's parameters and print the compose file",
        description="Render an app (a seed folder, an app document or a metadata file with its "
                    "compose files beside it) into a compose file. Exit code 2 lists bad values per field.")
    render.add_argument("source", help="app folder, app/metadata document (.json or .yaml), or a published "
                                       "version of this registry: <tenant>/<app>:<version> (no version: the latest)")
    render.add_argument("--version", dest="app_version", help="app version (default: the latest)")
    render.add_argument("--set", dest="assignments", action="append", default=[], metavar="NAME=VALUE",
                        help="a parameter value (repeatable; wins over --values)")
    render.add_argument("--values", help="YAML or JSON file mapping parameter names to values")
    render.add_argument("--project-name", help="set the compose project `name:`")
    render.add_argument("-o", "--output", help="write the compose file here instead of stdout")
    render.add_argument("--config", dest="sub_config", help="YAML config file (for a published version)")
    render.add_argument("--data-dir", help="data directory (for a published version; default ./data)")
    # A published version is read from this registry's store: that needs the configuration; a
    # folder or file does not (a broken DAOHUB_* environment does not stop it).
    render.set_defaults(app_handler=_render, needs_config=lambda args: _published(args.source) is not None)
    return verbs


def needs_config(args: argparse.Namespace) -> bool:
    needs = getattr(args, "needs_config", True)
    return bool(needs(args) if callable(needs) else needs)


def _published(source: str) -> tuple[str, str | None] | None:
    from .appcatalog import registry_reference

    return registry_reference(source)


def run(args: argparse.Namespace, config=None) -> int:
    return args.app_handler(args, config)


def _fail(errors: dict[str, str], prefix: str = "") -> int:
    for field, message in errors.items():
        where = f"{prefix}{field}" if field else prefix.rstrip(".")
        print(f"daohub: {where}: {message}" if where else f"daohub: {message}", file=sys.stderr)
    return EXIT_INVALID


def _render(args: argparse.Namespace, config) -> int:
    from appstore import yamlsafe
    from appstore.errors import AppStoreError, ValuesError
    from appstore.model import load_app
    from appstore.render import parse_assignments, render

    published = _published(args.source)
    if published is not None:
        from hub.problems import Problem

        from .appcatalog import published_version

        try:
            version = published_version(config, published[0], published[1] or args.app_version)
        except Problem as exc:
            return _fail({"": f"{args.source}: {exc.detail}"})
    else:
        try:
            app = load_app(args.source)
        except AppStoreError as exc:
            return _fail(exc.errors, f"{args.source}: ")
        try:
            version = app.version(args.app_version)
        except KeyError:
            known = ", ".join(v.version for v in app.versions)
            return _fail({"--version": f"{app.key} has no version {args.app_version} (it has {known})"})
    values: dict = {}
    try:
        if args.values:
            loaded = yamlsafe.load(Path(args.values).read_bytes())
            if loaded is not None and not isinstance(loaded, dict):
                raise ValuesError({"--values": "must be a mapping of parameter names to values"})
            values.update(loaded or {})
        values.update(parse_assignments(args.assignments))
        result = render(version, values, project_name=args.project_name)
    except OSError as exc:
        return _fail({"--values": f"cannot read {args.values}: {exc.strerror or exc}"})
    except AppStoreError as exc:
        return _fail(exc.errors)
    if args.output:
        # The file holds the passwords and generated secrets: readable by its owner only.
        fd = os.open(args.output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(result.text)
    else:
        sys.stdout.write(result.text)
    if result.generated:
        where = args.output or "the output"
        print(f"daohub: generated secrets for {', '.join(result.generated)} (written in {where})", file=sys.stderr)
    return 0
