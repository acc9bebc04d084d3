"""`daohub user | tenant | robot | repo | keys`: identity management from the command line."""

from __future__ import annotations

import argparse
import json
import sys
import time

from auth.passwords import generate_secret, hash_secret
from auth.policy import Role
from auth.scopes import DELETE, PULL, PUSH

from .db.identity import RobotRecord


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
    from .app import auth_service, open_registry
    from .registry.names import validate_name

    async with open_registry(config) as registry:
        store = registry.store
        service = auth_service(config, store)
        command = (args.command, args.verb)
        if command == ("user", "create"):
            password = sys.stdin.readline().rstrip("\n") if args.password_stdin else generate_secret(18)
            if not password:
                return _fail("empty password")
            if not await store.create_user(args.username, await service.hash_password(password), is_admin=args.admin):
                return _fail(f"user {args.username!r} exists")
            await store.audit("cli", "user.create", args.username)
            print(json.dumps({"username": args.username, "admin": args.admin,
                              **({} if args.password_stdin else {"password": password})}))
        elif command == ("user", "password"):
            password = sys.stdin.readline().rstrip("\n")
            if not password or not await store.set_password(args.username, await service.hash_password(password)):
                return _fail(f"no user {args.username!r} (or empty password)")
            await store.audit("cli", "user.password", args.username)
        elif command == ("tenant", "create"):
            validate_name(args.name)
            if "/" in args.name or not await store.create_tenant(args.name, args.display_name, args.quota_bytes):
                return _fail(f"tenant {args.name!r} exists or is not a single name component")
            await store.audit("cli", "tenant.create", args.name)
        elif command == ("tenant", "member"):
            role = None if args.role == "none" else args.role
            if not await store.set_membership(args.tenant, args.username, role):
                return _fail("unknown tenant or user")
            await store.audit("cli", "tenant.member", f"{args.tenant}/{args.username}", json.dumps({"role": role}))
        elif command == ("robot", "create"):
            from auth.service import robot_account

            secret = generate_secret(32)
            expires = time.time() + args.expires_days * 86400 if args.expires_days else None
            record = RobotRecord(args.tenant, args.name, hash_secret(secret), tuple(args.repo), tuple(args.action),
                                 expires, False, time.time())
            if not await store.create_robot(record):
                return _fail("unknown tenant, or the robot exists")
            await store.audit("cli", "robot.create", robot_account(args.tenant, args.name))
            print(json.dumps({"account": robot_account(args.tenant, args.name), "secret": secret,
                              "expires_at": expires}))
        elif command == ("repo", "visibility"):
            validate_name(args.name)
            await store.set_repository_public(args.name, args.visibility == "public")
            await store.audit("cli", "repo.visibility", args.name, json.dumps({"visibility": args.visibility}))
        elif command == ("keys", "rotate"):
            await service.load_keys()
            kid = await service.rotate_keys()
            await store.audit("cli", "keys.rotate", kid)
            print(json.dumps({"kid": kid}))
        else:
            return _fail(f"unknown command {args.command} {args.verb}")
    return 0
