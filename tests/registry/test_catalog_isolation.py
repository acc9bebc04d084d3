"""The catalog under token auth: every page, and every Link, names only what the caller may see.

Two tenants with private repositories whose names interleave with the caller's in lexical
order, a public repository of the other tenant, a name of no tenant, and a robot whose
pattern covers part of its tenant. Each caller walks `/v2/_catalog?n=...` by its Link headers:
it must get exactly the names it may pull, each once, in order, and never see another name in
a body or a Link. On SQLite and PostgreSQL (the `hub` fixture).
"""

from __future__ import annotations

import re
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from hub.keys import AUTH, STORE

from .conftest import bearer, push_image, token

PRIVATE_OTHER = ["other/a-secret", "other/team-like", "other/zz"]
PUBLIC_OTHER = "other/open"
TEAM = ["team/a", "team/b", "team/ci/app", "team/ci/app/deep", "team/ci/bot", "team/z"]
UNTENANTED = "alpine"
EVERYTHING = sorted([*PRIVATE_OTHER, PUBLIC_OTHER, *TEAM, UNTENANTED])

VISIBLE = {
    "alice": sorted([PUBLIC_OTHER, *TEAM]),                      # developer of team
    "bob": sorted([*PRIVATE_OTHER, PUBLIC_OTHER]),               # admin of other
    "robot$team+ci": sorted([PUBLIC_OTHER, "team/ci/app", "team/ci/bot"]),  # pattern team/ci/*
    "root": EVERYTHING,                                          # the platform admin
}
PASSWORDS = {"robot$team+ci": "robot-secret"}


@pytest.fixture
async def world(hub):
    store, auth = hub.server.app[STORE], hub.server.app[AUTH]
    await store.create_user("root", await auth.hash_password("root-pw"), is_admin=True)
    root = await token(hub, *(f"repository:{name}:pull,push" for name in EVERYTHING), user="root")
    for name in EVERYTHING:
        await push_image(hub, name, root)
    await store.set_repository_public(PUBLIC_OTHER, True)
    return hub


async def walk(hub, tok: str, n: int) -> tuple[list[str], list[str]]:
    """Every name the catalog pages give, and every `last` the Link headers name."""
    names, lasts, url = [], [], f"/v2/_catalog?n={n}"
    for _ in range(len(EVERYTHING) + 2):
        r = await hub.get(url, headers=bearer(tok))
        assert r.status == 200, await r.text()
        page = (await r.json())["repositories"]
        assert len(page) <= n
        names += page
        link = r.headers.get("Link")
        if link is None:
            return names, lasts
        target = re.fullmatch(r'<([^>]+)>; rel="next"', link).group(1)
        lasts += parse_qs(urlsplit(target).query)["last"]
        assert unquote(urlsplit(target).path) == "/v2/_catalog"
        url = target
    raise AssertionError("the catalog's Link headers never end")


@pytest.mark.parametrize("n", [1, 2, 3])
@pytest.mark.parametrize("caller", sorted(VISIBLE))
async def test_catalog_walk_names_only_visible_repositories(world, caller, n):
    tok = await token(world, "registry:catalog:*", user=caller, password=PASSWORDS.get(caller))
    names, lasts = await walk(world, tok, n)
    assert names == VISIBLE[caller]  # each visible name exactly once, in order
    assert set(lasts) <= set(VISIBLE[caller])  # a Link never names what the caller may not see


async def test_full_page_of_hidden_names_still_reaches_the_visible_ones(world):
    # Three private names of `other` sort before alice's first one: her first page of one is
    # already hers, not an empty page with a Link naming other/a-secret.
    tok = await token(world, "registry:catalog:*", user="alice")
    r = await world.get("/v2/_catalog?n=1", headers=bearer(tok))
    assert (await r.json())["repositories"] == [PUBLIC_OTHER]
    r = await world.get("/v2/_catalog?n=1&last=other/a-secret", headers=bearer(tok))
    assert (await r.json())["repositories"] == [PUBLIC_OTHER]
    assert "a-secret" not in r.headers.get("Link", "") and "team-like" not in r.headers.get("Link", "")


async def test_tag_list_of_another_tenant_is_refused_like_a_missing_repository(world):
    tok = await token(world, "repository:other/zz:pull", "repository:other/missing:pull", user="alice")
    for name in ("other/zz", "other/missing"):
        r = await world.get(f"/v2/{name}/tags/list?n=1", headers=bearer(tok))
        assert r.status == 401 and 'error="insufficient_scope"' in r.headers["WWW-Authenticate"]
        assert (await r.json())["errors"][0]["code"] == "DENIED"
        assert "Link" not in r.headers
    # The public repository of the other tenant lists its tags.
    tok = await token(world, f"repository:{PUBLIC_OTHER}:pull", user="alice")
    r = await world.get(f"/v2/{PUBLIC_OTHER}/tags/list", headers=bearer(tok))
    assert r.status == 200 and (await r.json())["tags"] == ["v1"]

