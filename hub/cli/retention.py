"""`daohub retention policy get|set|delete`, `daohub retention immutable get|set|delete` and `daohub
retention run`: retention and immutable tags from the command line (docs/retention.md,
hub/registry/retention.py)."""

from __future__ import annotations

import json
import sys


def add_parsers(sub) -> None:
    retention = sub.add_parser("retention", help="retention policies and runs").add_subparsers(
        dest="verb", required=True)
    policy = retention.add_parser("policy", help="a tenant's retention policy").add_subparsers(
        dest="policy_verb", required=True)
    get = policy.add_parser("get", help="print the tenant's policy (JSON)")
    put = policy.add_parser("set", help="replace the tenant's policy with a JSON document")
    put.add_argument("--file", required=True, help="the policy document (JSON), or - for stdin")
    delete = policy.add_parser("delete", help="delete the tenant's policy (nothing of it is deleted any more)")
    immutable = retention.add_parser("immutable", help="a tenant's immutable-tag rules").add_subparsers(
        dest="policy_verb", required=True)
    iget = immutable.add_parser("get", help="print the tenant's immutable-tag rules (JSON)")
    iput = immutable.add_parser("set", help="replace the tenant's immutable-tag rules with a JSON document")
    iput.add_argument("--file", required=True, help="the rules document (JSON), or - for stdin")
    idelete = immutable.add_parser("delete", help="remove the rules (the tenant's tags may move and go again)")
    run = retention.add_parser("run", help="apply the policies now (every tenant with one, or --tenant)")
    run.add_argument("--dry-run", action="store_true", help="only list what would be deleted; change nothing")
    run.add_argument("--json", action="store_true", help="print the whole report, every verdict, as JSON")
    for p in (get, put, delete, iget, iput, idelete):
        p.add_argument("--tenant", required=True)
    run.add_argument("--tenant", help="only this tenant")
    for p in (get, put, delete, iget, iput, idelete, run):
        p.add_argument("--config", dest="sub_config", help="YAML config file")
        p.add_argument("--data-dir", help="data directory (default ./data)")


def _fail(message: str) -> int:
    print(f"daohub: {message}", file=sys.stderr)
    return 1


def _summary(report) -> str:
    c = report.counts
    verb = "would delete" if report.dry_run else "deleted"
    scope = f" of tenant {report.tenant}" if report.tenant else ""
    head = "dry run" if report.dry_run else f"retention run {report.run_id}"
    lines = [f"{head}{scope}: {c['tags']} tags in {len(report.tenants)} tenants; {c['kept']} kept, "
             f"{c['protected']} protected, {verb} {c['deleted']}, {c['moved']} pushed again since read (left), "
             f"{c['gone']} gone; {verb} {c['untagged_deleted']} of {c['untagged']} untagged manifests "
             f"in {report.duration_seconds:.2f}s"]
    for v in report.deleted:
        pulled = ("never pulled" if v.pulled_at is None
                  else f"pulled {(report.started_at - v.pulled_at) / 86400:.1f}d ago")
        name = f"{v.repository}:{v.tag}" if v.tag is not None else f"{v.repository}@{v.digest}"
        lines.append(f"  {verb} {name} ({v.artifact_type}, {v.age_seconds / 86400:.1f}d old, {pulled}): {v.reason}")
    lines += [f"  error: {e}" for e in report.errors]
    return "\n".join(lines)


async def run(config, args) -> int:
    from ..app import cli_administration, open_registry
    from ..problems import Problem
    from ..registry.retention import Retention
    from .progress import Meter

    async with open_registry(config) as registry:
        admin = cli_administration(config, registry)
        if args.verb == "run":
            if args.tenant is not None:
                try:
                    await admin.tenant(args.tenant)
                except Problem as problem:
                    return _fail(problem.detail)
            retention = Retention(registry, lease_seconds=config.retention.lease_seconds)
            with Meter("retention dry run" if args.dry_run else "retention", unit="items",
                       items="verdicts") as meter:
                report = await retention.run(dry_run=args.dry_run, tenant=args.tenant, trigger="cli", actor="cli",
                                             progress=meter)
            print(json.dumps(report.as_dict()) if args.json else _summary(report))
            return 1 if report.errors else 0
        rules = args.verb == "immutable"
        what = "immutable-tag rules" if rules else "retention policy"
        try:
            if args.policy_verb == "get":
                stored = await (admin.immutable_tag_rules if rules else admin.retention_policy)(args.tenant)
                print(json.dumps(stored.document, indent=2, sort_keys=True))
            elif args.policy_verb == "set":
                text = sys.stdin.read() if args.file == "-" else open(args.file, encoding="utf-8").read()
                try:
                    document = json.loads(text)
                except ValueError as exc:
                    return _fail(f"the {what} is not valid JSON: {exc}")
                setter = admin.set_immutable_tag_rules if rules else admin.set_retention_policy
                stored = await setter(args.tenant, document)
                print(json.dumps(stored.document, indent=2, sort_keys=True))
                print(f"daohub: replaced the {what} of tenant {args.tenant} (above)", file=sys.stderr)
            else:
                await (admin.delete_immutable_tag_rules if rules else admin.delete_retention_policy)(args.tenant)
                print(f"deleted the {what} of tenant {args.tenant}")
        except Problem as problem:
            details = [f"  {e.get('pointer', '').removeprefix('#')}: {e['detail']}" for e in problem.errors or ()]
            return _fail("\n".join([problem.detail if not details else f"invalid {what}:", *details]))
        except OSError as exc:
            return _fail(str(exc))
    return 0
