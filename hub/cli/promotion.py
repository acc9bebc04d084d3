"""`daohub promote SRC DST` and `daohub promotion list|show|approve|reject`: promotions from the command
line (docs/promotion.md, hub/registry/promotion.py).

The CLI acts as the operator ("cli", as its other commands do): it may pull and push every repository
and holds every role, but the target's gates apply as they do through the API. A promotion the CLI
requested is approved by someone else (the API) unless its gates allow self-approval."""

from __future__ import annotations

import json
import sys


def add_parsers(sub) -> None:
    promote = sub.add_parser("promote", help="promote an image: SRC (repo:tag or repo@digest) to DST (repo:tag)")
    promote.add_argument("source", metavar="SRC", help="what to promote: tenant/repo:tag or tenant/repo@digest")
    promote.add_argument("target", metavar="DST", help="where to: tenant/repo:tag")
    promotion = sub.add_parser("promotion", help="promotions: list, show, approve, reject").add_subparsers(
        dest="verb", required=True)
    listing = promotion.add_parser("list", help="promotions, newest first")
    listing.add_argument("--state", choices=("pending", "completed", "rejected"))
    listing.add_argument("--limit", type=int, default=50, help="at most this many, newest first (default 50)")
    listing.add_argument("--json", action="store_true", help="print a JSON array (the admin API's items), for scripts")
    show = promotion.add_parser("show", help="one promotion (JSON)")
    approve = promotion.add_parser("approve", help="approve a pending promotion and complete it")
    reject = promotion.add_parser("reject", help="reject a pending promotion")
    for p in (show, approve, reject):
        p.add_argument("id", type=int, help="the promotion's id (promotion list shows them)")
    for p in (approve, reject):
        p.add_argument("--reason")
    for p in (promote, listing, show, approve, reject):
        p.add_argument("--config", dest="sub_config", help="YAML config file")
        p.add_argument("--data-dir", help="data directory (default ./data)")


def _json(record) -> dict:
    from ..handlers.admin.promotions import promotion_json

    return promotion_json(record)


def _line(record) -> str:
    waiting = f" (waits for an approval: role {record.approval_role})" if record.state == "pending" else ""
    return f"promotion {record.id}: {record.source} -> {record.target} {record.state}{waiting}"


async def run(config, args) -> int:
    from ..app import open_registry
    from ..problems import Problem
    from ..registry.promotion import Promotions

    async def anything(_: str) -> bool:
        return True

    async with open_registry(config) as registry:
        promotions = Promotions(registry)
        try:
            if args.command == "promote":
                record = await promotions.request("cli", args.source, args.target, can_pull=anything,
                                                  can_push=anything)
                print(_line(record))
            elif args.verb == "list":
                from .listing import emit

                found = await promotions.list(tenants=None, state=args.state, digest=None,
                                              limit=max(1, min(args.limit, 500)), before=None)
                emit([_json(r) for r in found], [("ID", "id"), ("STATE", "state"), ("SOURCE", "source"),
                                                 ("TARGET", "target"), ("REQUESTED BY", "requested_by"),
                                                 ("DECIDED BY", "decided_by")],
                     args.json, what="promotions" + (f" {args.state}" if args.state else ""))
            else:
                record = await promotions.find(args.id, lambda _: True)
                if args.verb == "show":
                    print(json.dumps(_json(record), indent=2, sort_keys=True))
                else:
                    decide = promotions.approve if args.verb == "approve" else promotions.reject
                    print(_line(await decide("cli", record, lambda _tenant, _role: True, args.reason)))
        except Problem as problem:
            print(f"daohub: {problem.detail}", file=sys.stderr)
            for error in problem.errors or ():
                print(f"  {error.get('pointer', '').removeprefix('#')}: {error['detail']}", file=sys.stderr)
            return 1
    return 0
