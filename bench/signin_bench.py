#!/usr/bin/env python3
"""Token requests per second with LDAP accounts against local accounts, the directory cache warm and cold.

    python3 bench/signin_bench.py [--seconds 5] [--rounds 3] [--concurrency 8]

Starts a throwaway slapd (tests/helpers/slapd.py; Debian's slapd and ldap-utils) with one user,
and DaoHub twice: with `cache_seconds: 300` (warm: after the first request a token request checks
the password against the cache's HMAC) and with `cache_seconds: 0` (cold: every request searches
the directory and binds as the user, over StartTLS). Each has a local user too, whose password is
an argon2id hash (DaoHub's default cost, 64 MiB). `--concurrency` clients ask `GET /auth/token`
with Basic credentials and a push scope for `--seconds`, alternating LDAP and local account round by
round; each row's headline is the median of the rounds. The LDAP side is "DaoHub"; the local
account is what it is compared with. A benchmark, not a test: it asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from benchlib import DaoHubProcess, Row, common_options, load_average, log, report, run_loop

import aiohttp

from tests.helpers.slapd import ROOT_DN, ROOT_PASSWORD, SUFFIX, Slapd, people_ldif
from tests.helpers.tls import make_pki

OU = "bench"
LDAP_USER, LDAP_PASSWORD = "ldapuser", "ldap-Bench-1"
LOCAL_USER, LOCAL_PASSWORD = "localuser", "local-Bench-1"
SCOPE = "repository:team/app:pull,push"


def provider(slapd: Slapd, cache_seconds: int) -> list[dict]:
    base = f"ou={OU},{SUFFIX}"
    return [{"name": "corp", "type": "ldap", "cache_seconds": cache_seconds,
             "ldap": {"url": slapd.url, "start_tls": True, "ca_file": str(slapd.pki.ca_file), "bind_dn": ROOT_DN,
                      "bind_password": ROOT_PASSWORD, "user_search_base": base},
             "group_mappings": [{"group": f"cn=devs,{base}", "tenant": "team", "role": "developer"}]}]


def start_hub(root: Path, slapd: Slapd, cache_seconds: int, python: str) -> DaoHubProcess:
    server = DaoHubProcess(root / f"hub-cache-{cache_seconds}", python=python, env={
        "DAOHUB_AUTH_ENABLED": "true", "DAOHUB_ADMIN_PASSWORD": "bench-admin-pw", "DAOHUB_LOG_ACCESS_LOG": "false",
        # Every run asks thousands of times for the same two accounts: no throttling of the right password.
        "DAOHUB_AUTH_LOGIN_FAILURE_LIMIT": "1000000", "DAOHUB_AUTH_LOGIN_ADDRESS_FAILURE_LIMIT": "1000000",
        "DAOHUB_AUTH_PROVIDERS": json.dumps(provider(slapd, cache_seconds))})
    server.start()
    server.cli("tenant", "create", "team")
    server.cli("user", "create", LOCAL_USER, "--password-stdin", stdin=LOCAL_PASSWORD + "\n")
    server.cli("tenant", "member", "team", LOCAL_USER, "developer")
    return server


async def token_rate(url: str, user: str, password: str, seconds: float, concurrency: int) -> tuple[float, int]:
    """Token requests per second (each granted push), and how many were made."""
    headers = {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}
    params = {"service": "daohub", "scope": SCOPE}
    done = 0
    async with aiohttp.ClientSession() as session:
        async def one() -> None:
            async with session.get(f"{url}/auth/token", params=params, headers=headers) as r:
                body = await r.json()
                if r.status != 200 or body.get("expires_in") is None:
                    raise RuntimeError(f"token request for {user} answered {r.status}: {body}")

        await one()  # warm-up (and, for the warm cache, its first bind)
        deadline = time.monotonic() + seconds
        started = time.monotonic()

        async def client() -> None:
            nonlocal done
            while time.monotonic() < deadline:
                await one()
                done += 1

        await asyncio.gather(*(client() for _ in range(concurrency)))
        return done / (time.monotonic() - started), done


async def main_async(args: argparse.Namespace) -> int:
    root = Path(tempfile.mkdtemp(prefix="signin-bench-", dir=args.tmpdir))
    extra = {"load_average_start": load_average()}
    rows = {"warm": Row("warm", "token requests/s, LDAP account, cache warm", "req/s", "local account"),
            "cold": Row("cold", "token requests/s, LDAP account, cache cold (bind each time)", "req/s",
                        "local account")}
    slapd = Slapd(pki=make_pki(root / "pki"))  # its own directory under /tmp (the openldap user must reach it)
    hubs: dict[str, DaoHubProcess] = {}
    try:
        slapd.start()
        slapd.add(people_ldif(OU, {LDAP_USER: LDAP_PASSWORD}, {"devs": [LDAP_USER]}))
        hubs = {"warm": start_hub(root, slapd, 300, args.python), "cold": start_hub(root, slapd, 0, args.python)}
        for round_ in range(args.rounds):
            for key, server in hubs.items():
                for side, (user, password) in (("daohub", (LDAP_USER, LDAP_PASSWORD)),
                                               ("other", (LOCAL_USER, LOCAL_PASSWORD))):
                    try:
                        rate, count = await token_rate(server.url, user, password, args.seconds, args.concurrency)
                    except (RuntimeError, aiohttp.ClientError) as exc:
                        rows[key].errors[side] = str(exc)[:500]
                        continue
                    rows[key].add(side, rate, requests=count, round=round_ + 1)
                    log(f"round {round_ + 1} {key} {user}: {rate:,.1f} req/s ({count} requests)")
    finally:
        for server in hubs.values():
            server.stop()
        if args.keep:
            slapd.stop()
            log(f"kept {root}")
        else:
            slapd.destroy()
            shutil.rmtree(root, ignore_errors=True)
    extra["slapd"] = "Debian slapd, StartTLS, mdb"
    return 0 if report("signin_bench", list(rows.values()), args, extra) else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0, help="seconds per run")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=8)
    common_options(ap, "0.5 s runs, one round")
    args = ap.parse_args()
    if args.smoke:
        args.seconds, args.rounds = 0.5, 1
    if not Path("/usr/sbin/slapd").exists() or not shutil.which("ldapadd"):
        print("slapd and ldap-utils are needed (apt-get install -y slapd ldap-utils)", file=sys.stderr)
        return 2
    return run_loop(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
