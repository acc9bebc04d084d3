"""`daohub user | tenant | robot | repo | keys`: identity management from the command line."""

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
    create.add_argument("username")
    create.add_argument("--admin", action="store_true", help="make a platform admin")
    create.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    passwd = user.add_parser("password", help="set a user's password (from stdin)")
    passwd.add_argument("username")

    tenant = sub.add_parser("tenant", help="manage tenants").add_subparsers(dest="verb", required=True)
    tcreate = tenant.add_parser("create", help="create a tenant (namespace)")
    tcreate.add_argument("name")
    tcreate.add_argument("--display-name", default="")
    tcreate.add_argument("--quota-bytes", type=int, default=None)
    member = tenant.add_parser("member", help="set a member's role (or 'none' to remove)")
    member.add_argument("tenant")
    member.add_argument("username")
    member.add_argument("role", choices=[r.value for r in Role] + ["none"])

    robot = sub.add_parser("robot", help="manage robot accounts").add_subparsers(dest="verb", required=True)
    rcreate = robot.add_parser("create", help="create a robot; its secret is printed once")
    rcreate.add_argument("tenant")
    rcreate.add_argument("name")
    rcreate.add_argument("--repo", action="append", required=True,
                         help="repository name or pattern inside the tenant (repeatable), e.g. team/ci/*")
    rcreate.add_argument("--action", action="append", required=True, choices=[PULL, PUSH, DELETE])
    rcreate.add_argument("--expires-days", type=float, default=None)

    repo = sub.add_parser("repo", help="repository settings").add_subparsers(dest="verb", required=True)
    vis = repo.add_parser("visibility", help="make a repository public (anonymous pull) or private")
    vis.add_argument("name")
    vis.add_argument("visibility", choices=["public", "private"])

    keys = sub.add_parser("keys", help="token signing keys").add_subparsers(dest="verb", required=True)
    keys.add_parser("rotate", help="start signing with a new key; tokens of the previous keys stay valid")

    for p in (create, passwd, tcreate, member, rcreate, vis, keys.choices["rotate"]):
        p.add_argument("--config", dest="sub_config", help="YAML config file")
        p.add_argument("--data-dir", help="data directory (default ./data)")


def _fail(message: str) -> int:
    print(f"daohub: {message}", file=sys.stderr)
    return 1


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
            if command == ("user", "create"):
                password = sys.stdin.readline().rstrip("\n") if args.password_stdin else generate_secret(18)
                await admin.create_user(args.username, password, is_admin=args.admin)
                print(json.dumps({"username": args.username, "admin": args.admin,
                                  **({} if args.password_stdin else {"password": password})}))
            elif command == ("user", "password"):
                await admin.set_password(args.username, sys.stdin.readline().rstrip("\n"))
            elif command == ("tenant", "create"):
                await admin.create_tenant(args.name, args.display_name, args.quota_bytes)
            elif command == ("tenant", "member"):
                await admin.set_member(args.tenant, args.username, None if args.role == "none" else args.role)
            elif command == ("robot", "create"):
                record, secret = await admin.create_robot(args.tenant, args.name, args.repo, args.action,
                                                          args.expires_days)
                print(json.dumps({"account": robot_account(args.tenant, args.name), "secret": secret,
                                  "expires_at": record.expires_at}))
            elif command == ("repo", "visibility"):
                await admin.set_repository_public(args.name, args.visibility == "public", must_exist=False)
            elif command == ("keys", "rotate"):
                await service.load_keys()
                kid = await service.rotate_keys()
                await store.audit("cli", "keys.rotate", kid)
                print(json.dumps({"kid": kid}))
            else:
                return _fail(f"unknown command {args.command} {args.verb}")
        except Problem as problem:
            return _fail(problem.detail)
    return 0
