"""A test host of the test run's own: a network namespace joined to this one by a veth pair.

Tests talk to loopback, or to such a host. Some clients treat loopback specially (dockerd
takes every 127.0.0.0/8 registry for an insecure one and never checks its certificate), so a
server they must see as a remote one runs inside the namespace instead (`DaoHubProcess(netns=)`):

    with netns_host() as host:           # ip netns add daohub-tls-<pid>-<token>; a veth pair
        hub = DaoHubProcess(..., host=host.address, netns=host.name)

`host.address` is the namespace's end of a private /30 (10.213.N.2, N random and checked
against every address and route of this machine), `host.peer_address` this side's (.1).
On exit the namespace is deleted (its processes must have been stopped) and so is the veth.
Namespaces whose creating process is gone (a killed run) are cleaned up at the next start.
Root and `ip` (iproute2) are needed; without them it is a failure under CI, a skip elsewhere.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import random
import secrets
import signal
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.e2e.util import IN_CI, need_tool, run

PREFIX = "daohub-tls-"
NETWORK = ipaddress.ip_network("10.213.0.0/16")  # a host takes the first /30 of one of its /24s


@dataclass(frozen=True)
class NetnsHost:
    name: str              # of the network namespace
    address: str           # inside it
    peer_address: str      # of this namespace's end of the veth
    veth: str              # this namespace's end


def _unavailable(message: str):
    if IN_CI:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _names(token: str) -> tuple[str, str]:
    """The two ends of the veth (interface names stay under 16 bytes)."""
    return f"dh{token}h", f"dh{token}n"


def remove_stale(ip: str, prefix: str = PREFIX) -> list[str]:
    """Delete namespaces named `<prefix><pid>-<token>` whose pid is not running any more, with the
    processes left inside them and their veth. Those of live runs are left alone. Returns the names."""
    removed = []
    for line in run([ip, "netns", "list"]).stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        pid, _, token = name.removeprefix(prefix).partition("-")
        if not name.startswith(prefix) or not pid.isdigit() or not token or _alive(int(pid)):
            continue
        for leftover in run([ip, "netns", "pids", name], check=False).stdout.split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(leftover), signal.SIGKILL)
        run([ip, "netns", "del", name], check=False)
        run([ip, "link", "del", _names(token)[0]], check=False)
        removed.append(name)
    return removed


def _networks_in_use(ip: str) -> list[ipaddress.IPv4Network]:
    """Every IPv4 network of an address or a route here (the default route excepted)."""
    used = []
    for line in run([ip, "-o", "-4", "addr", "show"]).stdout.splitlines():
        words = line.split()
        used.append(ipaddress.ip_interface(words[words.index("inet") + 1]).network)
    for line in run([ip, "-4", "route", "show", "table", "all"]).stdout.splitlines():
        # `10.0.0.0/8 dev ...`, or with a type first: `local 127.0.0.0/8 ...`, `blackhole ...`
        for word in line.split()[:2]:
            with contextlib.suppress(ValueError):
                used.append(ipaddress.ip_network(word, strict=False))
                break
    return used


def free_subnet(ip: str) -> ipaddress.IPv4Network:
    """A /30 of NETWORK that overlaps no address or route of this machine."""
    used = _networks_in_use(ip)
    candidates = [next(block.subnets(new_prefix=30)) for block in NETWORK.subnets(new_prefix=24)]
    random.shuffle(candidates)
    for subnet in candidates:
        if not any(subnet.overlaps(other) for other in used):
            return subnet
    raise AssertionError(f"every {NETWORK} /30 we use collides with an address or route here: {used}")


@contextlib.contextmanager
def netns_host(prefix: str = PREFIX) -> Iterator[NetnsHost]:
    ip = need_tool("ip")
    if os.geteuid() != 0:
        _unavailable("a network namespace for a test host needs root")
    remove_stale(ip, prefix)
    token = secrets.token_hex(3)
    name = f"{prefix}{os.getpid()}-{token}"
    outside, inside = _names(token)
    subnet = free_subnet(ip)
    peer_address, address = (str(a) for a in subnet.hosts())
    created = run([ip, "netns", "add", name], check=False)
    if created.returncode != 0:
        _unavailable(f"ip netns add {name} failed: {created.stderr.strip()}")
    try:
        in_ns = [ip, "-n", name]
        run([ip, "link", "add", outside, "type", "veth", "peer", "name", inside])
        run([ip, "link", "set", inside, "netns", name])
        run([ip, "addr", "add", f"{peer_address}/{subnet.prefixlen}", "dev", outside])
        run([*in_ns, "addr", "add", f"{address}/{subnet.prefixlen}", "dev", inside])
        run([ip, "link", "set", outside, "up"])
        run([*in_ns, "link", "set", inside, "up"])
        run([*in_ns, "link", "set", "lo", "up"])
        yield NetnsHost(name=name, address=address, peer_address=peer_address, veth=outside)
    finally:
        run([ip, "netns", "del", name], check=False)
        # Gone with the namespace's end already, unless a process still holds the namespace.
        run([ip, "link", "del", outside], check=False)
