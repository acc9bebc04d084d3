"""The read-only git endpoint of app versions (hub.handlers.appstore.git, appstore.gitrepo), with
the real git CLI against a live DaoHub over SQLite: clone, shallow clone, ls-remote, fsck, the
Portainer feed's repository URLs, private apps with a robot's Basic credentials, and protocol
edge cases answered 4xx."""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import os
import shutil
import time
import zlib
from urllib.parse import quote

import pytest

from appstore import gitrepo
from auth.passwords import hash_secret
from hub.app import create_app
from hub.db.identity import RobotRecord
from hub.keys import STORE
from tests.admin.conftest import CREDENTIALS, headers, make_config, seed

from .hubs import COMPOSE, PUBLISHED_COMPOSE, publish_body

GIT = shutil.which("git")
if GIT is None:
    if os.environ.get("CI") == "true":
        raise RuntimeError("git is required for tests/appstore/test_git.py")
    pytest.skip("the git CLI is not installed", allow_module_level=True)

PUB = "/api/v1/appstore/git/team/pub/1.0.0.git"
SECRET = "/api/v1/appstore/git/team/secret/1.0.0.git"
PORTAINER = "Authorization: Basic " + base64.b64encode(b"robot$team+portainer:portainer-secret").decode()


@pytest.fixture
async def hub(aiohttp_client, tmp_path):
    """A live DaoHub (SQLite) with team/pub (public) and team/secret (private), a pull-only robot of
    team for Portainer and a robot of the other tenant; `hub.replica` is a second DaoHub over the
    same database and storage."""
    client = await aiohttp_client(create_app(make_config(tmp_path)))
    await seed(client, images=False)
    store = client.server.app[STORE]
    await store.create_robot(RobotRecord("other", "ci", hash_secret("other-secret"), ("other/**",),
                                         ("pull", "push", "delete"), None, False, time.time()))
    await store.create_robot(RobotRecord("team", "portainer", hash_secret("portainer-secret"), ("team/**",),
                                         ("pull",), None, False, time.time()))
    for repository, key in (("team/secret", "secret"), ("team/pub", "pub")):
        r = await client.post(f"/api/v1/appstore/apps/{repository}/versions", headers=headers("developer"),
                              json=publish_body(key))
        assert r.status == 201, await r.text()
    await store.set_repository_public("team/pub", True)
    client.replica = await aiohttp_client(create_app(make_config(tmp_path)))
    return client


def url(client, path: str) -> str:
    return str(client.make_url(path))


def auth_header(user: str, password: str) -> str:
    return "Authorization: Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


async def git(cwd, *args: str, header: str | None = None) -> tuple[int, str, str]:
    """Run git without any user or system configuration; the server runs on this event loop."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(cwd), "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "/bin/false", "LC_ALL": "C"}
    pre = ["-c", f"http.extraHeader={header}"] if header else []
    proc = await asyncio.create_subprocess_exec(GIT, *pre, *args, cwd=cwd, env=env, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    return proc.returncode, out.decode(), err.decode()


async def clone(client, path: str, dest, *extra: str, header: str | None = None) -> str:
    code, _, err = await git(dest.parent, "clone", "-q", *extra, url(client, path), str(dest), header=header)
    assert code == 0, err
    code, out, err = await git(dest, "rev-parse", "HEAD")
    assert code == 0, err
    return out.strip()


async def test_clone_gives_the_published_files_in_a_stable_commit(hub, tmp_path):
    first = await clone(hub, PUB, tmp_path / "a")
    assert (tmp_path / "a" / "compose.yaml").read_bytes() == PUBLISHED_COMPOSE.encode()
    readme = (tmp_path / "a" / "README.md").read_text()
    assert "Serves **pages**." in readme and "`HTTP_PORT`" in readme
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == [".git", "README.md", "compose.yaml"]
    code, out, err = await git(tmp_path / "a", "fsck", "--strict", "--no-dangling")
    assert code == 0, out + err
    code, branch, _ = await git(tmp_path / "a", "symbolic-ref", "HEAD")
    assert branch.strip() == "refs/heads/main"
    # The same commit on every clone, over protocol v0 explicitly too, and on the replica.
    assert await clone(hub, PUB, tmp_path / "b") == first
    code, _, err = await git(tmp_path, "-c", "protocol.version=0", "clone", "-q", url(hub, PUB), "c")
    assert code == 0, err
    assert (await git(tmp_path / "c", "rev-parse", "HEAD"))[1].strip() == first
    assert await clone(hub.replica, PUB, tmp_path / "d") == first
    code, out, err = await git(tmp_path, "ls-remote", url(hub.replica, PUB))
    assert code == 0, err
    assert out.split("\n")[:2] == [f"{first}\tHEAD", f"{first}\trefs/heads/main"]


async def test_shallow_clone_and_fetch(hub, tmp_path):
    commit = await clone(hub, PUB, tmp_path / "s", "--depth", "1")
    assert (tmp_path / "s" / "compose.yaml").read_bytes() == PUBLISHED_COMPOSE.encode()
    code, out, err = await git(tmp_path / "s", "fsck", "--no-dangling")
    assert code == 0, out + err
    # Fetching again finds nothing new.
    code, _, err = await git(tmp_path / "s", "fetch", "-q", "origin")
    assert code == 0, err
    assert (await git(tmp_path / "s", "rev-parse", "origin/main"))[1].strip() == commit


async def test_private_app_needs_the_credentials_of_someone_who_may_pull_it(hub, tmp_path):
    await clone(hub, SECRET, tmp_path / "r", header=PORTAINER)
    assert (tmp_path / "r" / "compose.yaml").read_bytes() == PUBLISHED_COMPOSE.encode()
    # The seeded robot of team may pull team/ci/* only; the other one is another tenant's.
    for name, header in (("anon", None), ("other", auth_header("robot$other+ci", "other-secret")),
                         ("ci", auth_header(*CREDENTIALS["robot"]))):
        code, _, err = await git(tmp_path, "clone", "-q", url(hub, SECRET), name, header=header)
        assert code != 0 and ("not found" in err if header else "could not read Username" in err), err
    # Anonymous callers are challenged and signed-in outsiders told "not found", the same for a
    # private app as for a missing one, so neither learns that the app exists.
    for role, status in (("anonymous", 401), ("other_admin", 404)):
        hidden = await hub.get(SECRET + "/info/refs?service=git-upload-pack", headers=headers(role))
        missing = await hub.get(SECRET.replace("secret", "nothing") + "/info/refs?service=git-upload-pack",
                                headers=headers(role))
        assert hidden.status == missing.status == status
        assert (await hidden.json())["detail"] == (await missing.json())["detail"]
        assert hidden.headers.get("WWW-Authenticate") == missing.headers.get("WWW-Authenticate")
        assert ("WWW-Authenticate" in hidden.headers) == (status == 401)
    # The challenge lets the plain git CLI use credentials written in the URL.
    user, password = "robot$team+portainer", "portainer-secret"
    with_creds = url(hub, SECRET).replace("://", f"://{quote(user, safe='')}:{quote(password, safe='')}@", 1)
    code, _, err = await git(tmp_path, "clone", "-q", with_creds, "in-url")
    assert code == 0, err
    assert (tmp_path / "in-url" / "compose.yaml").read_bytes() == PUBLISHED_COMPOSE.encode()
    r = await hub.get(SECRET + "/info/refs", params={"service": "git-upload-pack"},
                      headers={"Authorization": PORTAINER.split(": ", 1)[1]})
    assert r.status == 200 and r.content_type == "application/x-git-upload-pack-advertisement"
    r = await hub.get(SECRET + "/info/refs", params={"service": "git-upload-pack"},
                      headers={"Authorization": auth_header("robot$team+ci", "wrong").split(": ", 1)[1]})
    assert r.status == 401


async def test_the_portainer_feed_repository_urls_are_clonable(hub, tmp_path):
    r = await hub.get("/api/v1/appstore/portainer/v2.json")
    templates = (await r.json())["templates"]
    assert [t["title"] for t in templates] == ["Web server"]
    for i, template in enumerate(templates):
        repo = template["repository"]
        assert repo["stackfile"] == "compose.yaml"
        assert {e["name"] for e in template["env"]} == {"NGINX_TAG", "HTTP_PORT", "GREETING"}
        dest = tmp_path / f"t{i}"
        code, _, err = await git(tmp_path, "clone", "-q", repo["url"], str(dest))
        assert code == 0, err
        assert (dest / repo["stackfile"]).read_bytes() == PUBLISHED_COMPOSE.encode()
    r = await hub.get("/api/v1/appstore/portainer/v3.json", headers={"Authorization": PORTAINER.split(": ", 1)[1]})
    urls = {t["repository"]["url"] for t in (await r.json())["templates"]}
    assert urls == {url(hub, PUB), url(hub, SECRET)}


def pkts(*lines: bytes) -> bytes:
    return b"".join(gitrepo.FLUSH if line is None else gitrepo.pkt(line) for line in lines)


async def test_protocol_edge_cases_are_4xx(hub):
    refs = await hub.get(PUB + "/info/refs", params={"service": "git-upload-pack"})
    body = await refs.read()
    commit = body.split(b"\n")[1][8:48].decode()
    post = PUB + "/git-upload-pack"
    ok = await hub.post(post, data=pkts(b"want %s side-band-64k no-progress\n" % commit.encode(), None, b"done\n"))
    assert ok.status == 200 and ok.content_type == "application/x-git-upload-pack-result"
    answer = await ok.read()
    assert answer.startswith(gitrepo.pkt(b"NAK\n"))
    for data, status in (
            (b"zzzz", 400), (b"0003", 400), (b"00ffwant", 400), (b"", 400),
            (pkts(b"want " + b"1" * 40 + b"\n", None, b"done\n"), 400),  # not our commit
            (pkts(b"want nope\n", None, b"done\n"), 400), (pkts(b"have " + commit.encode() + b"\n"), 400),
            (pkts(b"want %s\n" % commit.encode(), b"deepen x\n", None), 400),
            (pkts(b"want %s\n" % commit.encode(), None, b"done\n") + b"0" * gitrepo.MAX_PKT * 2, 413)):
        r = await hub.post(post, data=data)
        assert r.status == status, (data[:60], r.status, await r.text())
    # A have of the commit itself: ACK; with done, an empty pack follows.
    have = b"have %s\n" % commit.encode()
    r = await hub.post(post, data=pkts(b"want %s\n" % commit.encode(), None, have))
    assert await r.read() == gitrepo.pkt(b"ACK %s\n" % commit.encode())
    r = await hub.post(post, data=pkts(b"want %s\n" % commit.encode(), None, have, b"done\n"))
    assert await r.read() == gitrepo.pkt(b"ACK %s\n" % commit.encode()) + gitrepo.pack(())
    # A gzip body is inflated, and the size limit is on the inflated bytes (no gzip bomb).
    for data, status in ((pkts(b"want %s\n" % commit.encode(), None, b"done\n"), 200), (b"0" * 10_000_000, 413)):
        r = await hub.post(post, data=gzip.compress(data), headers={"Content-Encoding": "gzip"})
        assert r.status == status, await r.text()
    r = await hub.get(PUB + "/info/refs", params={"service": "git-receive-pack"})
    assert r.status == 403
    r = await hub.get(PUB + "/info/refs")
    assert r.status == 422
    r = await hub.post(PUB + "/git-receive-pack", data=b"0000")
    assert r.status in (404, 405)


def test_the_pack_is_well_formed_and_deterministic():
    repo = gitrepo.build({"compose.yaml": COMPOSE, "b.yaml": "x" * 5000}, readme="hi", message="App 1.0.0")
    assert repo.commit == gitrepo.build({"b.yaml": "x" * 5000, "compose.yaml": COMPOSE}, readme="hi",
                                        message="App 1.0.0").commit
    data = repo.pack()
    assert data[:12] == b"PACK\x00\x00\x00\x02\x00\x00\x00\x05"
    assert hashlib.sha1(data[:-20]).digest() == data[-20:]
    # The first object is the commit: type 1, then its zlib stream.
    assert (data[12] >> 4) & 7 == 1
    pos = 13 if data[12] < 0x80 else 14
    assert zlib.decompressobj().decompress(data[pos:]).startswith(b"tree ")
    for bad in ("a/b", "", ".git", ".."):
        with pytest.raises(ValueError):
            gitrepo.build({bad: "x"}, readme="", message="m")
