"""tests/helpers/netns.py: a test host of the run's own. A server started in it with
DaoHubProcess(netns=) runs in that namespace and is reached over the veth; nothing is left after
the block, and a namespace left by a killed run is removed at the next start (a live run's is not)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request

from tests.e2e.util import run
from tests.helpers.netns import netns_host
from tests.helpers.server import REPO_ROOT, DaoHubProcess


def namespaces() -> str:
    return run(["ip", "netns", "list"]).stdout


def links() -> str:
    return run(["ip", "-o", "link", "show"]).stdout


def test_a_server_in_the_test_host_is_reached_over_the_veth_and_nothing_stays(tmp_path):
    with netns_host() as host:
        assert host.name in namespaces() and host.veth in links()
        hub = DaoHubProcess(tmp_path / "hub", host=host.address, netns=host.name,
                            env={"DAOHUB_AUTH_ENABLED": "true", "DAOHUB_ADMIN_PASSWORD": "admin-Secret-0"})
        with hub:
            # The pid is the server's own (`ip netns exec` execs it), in the other namespace.
            assert os.readlink(f"/proc/{hub.pid}/ns/net") != os.readlink("/proc/self/ns/net")
            with urllib.request.urlopen(f"http://{host.address}:{hub.port}/healthz", timeout=10) as r:
                assert r.status == 200
        assert hub.proc.returncode == 0, hub.log_text()[-3000:]  # SIGTERM reached it
    assert host.name not in namespaces()
    assert host.veth not in links()


KILLED_RUN = """
import json, os, signal, sys
sys.path.insert(0, sys.argv[1])
from tests.helpers.netns import netns_host
with netns_host() as host:
    print(json.dumps([host.name, host.veth]), flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_namespace_left_by_a_killed_run_goes_at_the_next_start_and_a_live_one_stays():
    killed = subprocess.run([sys.executable, "-c", KILLED_RUN, str(REPO_ROOT)], capture_output=True,
                            text=True, timeout=60, check=False)
    assert killed.returncode == -9, killed.stderr
    name, veth = json.loads(killed.stdout)
    assert name in namespaces() and veth in links()  # what a killed run leaves behind
    with netns_host() as live:
        assert name not in namespaces() and veth not in links()
        with netns_host() as other:  # a start while `live` is in use (this process runs) keeps it
            assert live.name in namespaces() and live.veth in links()
            assert other.address != live.address
