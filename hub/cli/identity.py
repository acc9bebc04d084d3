"""`daohub user | tenant | robot | repo | keys`: identity management from the command line.

Every change says what it did: on stdout when that is all the command prints, on stderr when stdout
carries JSON (a generated password, a robot's secret, a key id) that scripts read. The `list` verbs
print a table, or with `--json` the admin API's items (hub/cli/listing.py)."""

from __future__ import annotations

import argparse
import json
import sys

from auth.passwords import generate_secret
from auth.policy import Role
from auth.scopes import DELETE, PULL, PUSH
from auth.service import robot_account


def add_parsers(sub) -> None:
    user = sub.add_parser("user", help="manage users").add_subparsers(dest="verb", required=True)
    create = user.add_parser("create", help="create a user (password from stdin, or generated and printed)")
    create.add_argument("username", help="the new user's name (lowercase letters, digits, . _ -)")
    create.add_argument("--admin", action="store_true", help="make a platform admin")
    create.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    passwd = user.add_parser("password", help="set a user's password (from stdin)")
    passwd.add_argument("username", help="the user whose password changes")
    ulist = user.add_parser("list", help="list users (platform admins, disabled accounts, sign-in provider)")

    tenant = sub.add_parser("tenant", help="manage tenants").add_subparsers(dest="verb", required=True)
    tcreate = tenant.add_parser("create", help="create a tenant (namespace)")
    tcreate.add_argument("name", help="the tenant's name: the first component of its repositories' names")
    tcreate.add_argument("--display-name", default="", help="a name for people")
    tcreate.add_argument("--quota-bytes", type=int, default=None, help="storage quota (default: none)")
    member = tenant.add_parser("member", help="set a member's role (or 'none' to remove)")
    member.add_argument("tenant", help="the tenant")
    member.add_argument("username", help="the user")
    member.add_argument("role", choices=[r.value for r in Role] + ["none"],
                        help="guest pulls; developer also pushes; maintainer also deletes; admin also manages "
                             "members, robots and settings; none removes the member")
    tlist = tenant.add_parser("list", help="list tenants with their quota and usage")

    robot = sub.add_parser("robot", help="manage robot accounts").add_subparsers(dest="verb", required=True)
    rcreate = robot.add_parser("create", help="create a robot; its secret is printed once")
    rcreate.add_argument("tenant", help="the tenant the robot belongs to")
    rcreate.add_argument("name", help="the robot's name; it signs in as robot$TENANT+NAME")
    rcreate.add_argument("--repo", action="append", required=True,
                         help="repository name or pattern inside the tenant (repeatable), e.g. team/ci/*")
    rcreate.add_argument("--action", action="append", required=True, choices=[PULL, PUSH, DELETE])
    rcreate.add_argument("--expires-days", type=float, default=None, help="days until it expires (default: never)")
    rlist = robot.add_parser("list", help="list a tenant's robots (never their secrets)")
    rlist.add_argument("tenant", help="the tenant whose robots to list")

    repo = sub.add_parser("repo", help="repository settings").add_subparsers(dest="verb", required=True)
    vis = repo.add_parser("visibility", help="make a repository public (anonymous pull) or private")
    vis.add_argument("name", help="the repository, TENANT/PATH (it may not exist yet)")
    vis.add_argument("visibility", choices=["public", "private"],
                     help="public: anyone may pull, anonymous included; private: members only")
    replist = repo.add_parser("list", help="list a tenant's repositories with size, tags and last push and pull")
    replist.add_argument("tenant", help="the tenant whose repositories to list")

    keys = sub.add_parser("keys", help="token signing keys").add_subparsers(dest="verb", required=True)
    keys.add_parser("rotate", help="start signing with a new key; tokens of the previous keys stay valid")

    for p in (ulist, tlist, rlist, replist):
        p.add_argument("--json", action="store_true", help="print a JSON array (the admin API's items), for scripts")
    for p in (create, passwd, ulist, tcreate, member, tlist, rcreate, rlist, vis, replist, keys.choices["rotate"]):
        p.add_argument("--config", dest="sub_config", help="YAML config file")
        p.add_argument("--data-dir", help="data directory (default ./data)")


def _fail(message: str) -> int:
    print(f"daohub: {message}", file=sys.stderr)
    return 1


def _did(message: str) -> None:
    """What a command that prints JSON on stdout did, for the person running it."""
    print(f"daohub: {message}", file=sys.stderr)


async def _list(admin, args: argparse.Namespace) -> None:
    from ..handlers.admin.common import rfc3339
    from ..handlers.admin.repositories import repository_json
    from ..handlers.admin.robots import robot_json
    from ..handlers.admin.tenants import tenant_json
    from ..handlers.admin.users import user_json
    from .listing import emit, every, size

    if args.command == "user":
        items = [user_json(u) for u in await every(admin.list_users, lambda u: u.username)]
        columns = [("USERNAME", "username"), ("ADMIN", "is_admin"), ("DISABLED", "disabled"),
                   ("PROVIDER", "provider"), ("CREATED", "created_at")]
        what = "users"
    elif args.command == "tenant":
        items = []
        for t in await every(admin.list_tenants, lambda t: t.name):
            item = {**tenant_json(t), "usage_bytes": await admin.tenant_usage(t.name)}
            items.append({**item, "quota": size(t.quota_bytes), "usage": size(item["usage_bytes"])})
        columns = [("NAME", "name"), ("DISPLAY NAME", "display_name"), ("QUOTA", "quota"), ("USED", "usage"),
                   ("CREATED", "created_at")]
        what = "tenants"
    elif args.command == "robot":
        await admin.tenant(args.tenant)
        items = [robot_json(r) for r in await every(lambda n, a: admin.list_robots(args.tenant, n, a),
                                                        lambda r: r.name)]
        columns = [("ACCOUNT", "account"), ("ACTIONS", "actions"), ("REPOSITORIES", "repositories"),
                   ("EXPIRES", "expires_at"), ("ACTIVE", "active")]
        what = f"robots in tenant {args.tenant}"
    else:
        await admin.tenant(args.tenant)
        last: dict[str, tuple[float, float | None]] = {}
        for (repository, _), (pushed, pulled) in (await admin.tag_times(args.tenant)).items():
            was_pushed, was_pulled = last.get(repository, (0.0, None))
            last[repository] = (max(pushed, was_pushed), max(pulled or 0, was_pulled or 0) or None)
        items = []
        for r in await every(lambda n, a: admin.repository_summaries(args.tenant, n, a), lambda r: r.name):
            pushed, pulled = last.get(r.name, (None, None))
            items.append({**repository_json(r), "last_pushed_at": rfc3339(pushed or None),
                          "last_pulled_at": rfc3339(pulled), "size": size(r.size_bytes)})
        columns = [("NAME", "name"), ("PUBLIC", "public"), ("TAGS", "tag_count"), ("SIZE", "size"),
                   ("LAST PUSH", "last_pushed_at"), ("LAST PULL", "last_pulled_at")]
        what = f"repositories in tenant {args.tenant}"
    if args.json:  # the people-friendly sizes are for the table only
        items = [{k: v for k, v in item.items() if k not in ("quota", "usage", "size")} for item in items]
    emit(items, columns, args.json, what=what)


async def run(config, args: argparse.Namespace) -> int:
    from ..app import auth_service, open_registry
    from ..problems import Problem
    from ..tenancy.service import Administration

    async with open_registry(config) as registry:
        store = registry.store
        service = auth_service(config, store)
        admin = Administration(store, service, "cli", upstreams=config.proxy.upstreams)
        command = (args.command, args.verb)
        try:
            if args.verb == "list":
                await _list(admin, args)
            elif command == ("user", "create"):
                password = sys.stdin.readline().rstrip("\n") if args.password_stdin else generate_secret(18)
                await admin.create_user(args.username, password, is_admin=args.admin)
                print(json.dumps({"username": args.username, "admin": args.admin,
                                  **({} if args.password_stdin else {"password": password})}))
                _did(f"created {'platform admin' if args.admin else 'user'} {args.username}"
                     + ("" if args.password_stdin else " (generated password above: shown once)"))
            elif command == ("user", "password"):
                await admin.set_password(args.username, sys.stdin.readline().rstrip("\n"))
                print(f"set the password of user {args.username}")
            elif command == ("tenant", "create"):
                await admin.create_tenant(args.name, args.display_name, args.quota_bytes)
                quota = f" with a quota of {args.quota_bytes} bytes" if args.quota_bytes is not None else ""
                print(f"created tenant {args.name}{quota}")
            elif command == ("tenant", "member"):
                await admin.set_member(args.tenant, args.username, None if args.role == "none" else args.role)
                print(f"removed {args.username} from tenant {args.tenant}" if args.role == "none"
                      else f"{args.username} is now {args.role} of tenant {args.tenant}")
            elif command == ("robot", "create"):
                record, secret = await admin.create_robot(args.tenant, args.name, args.repo, args.action,
                                                          args.expires_days)
                print(json.dumps({"account": robot_account(args.tenant, args.name), "secret": secret,
                                  "expires_at": record.expires_at}))
                _did(f"created robot {robot_account(args.tenant, args.name)} ({', '.join(args.action)} on "
                     f"{', '.join(args.repo)}); its secret above is shown once")
            elif command == ("repo", "visibility"):
                await admin.set_repository_public(args.name, args.visibility == "public", must_exist=False)
                print(f"repository {args.name} is now {args.visibility}")
            elif command == ("keys", "rotate"):
                await service.load_keys()
                kid = await service.rotate_keys()
                await store.audit("cli", "keys.rotate", kid)
                print(json.dumps({"kid": kid}))
                _did(f"new tokens are signed with key {kid}; tokens of the previous keys stay valid")
            else:
                return _fail(f"unknown command {args.command} {args.verb}")
        except Problem as problem:
            return _fail(problem.detail)
    return 0
