"""The OIDC provider (auth/providers/oidc.py) against a real provider on loopback (pyop,
tests/helpers/oidc_provider.py): discovery, the authorization URL with PKCE, the code exchange,
and the ID token checks: wrong aud, expired, alg=none, HS256 keyed with the public key, another
nonce, another issuer, an unknown key, a replayed code and a wrong PKCE verifier are refused."""

from __future__ import annotations

import base64
import hashlib
import re
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest

from auth.provider_settings import ProviderSpec, check_providers
from auth.providers import ProviderUnavailable
from auth.providers.oidc import OidcProvider, SignInRefused
from hub.config import ConfigError, load_config
from tests.helpers.oidc_provider import OidcUser

CLIENT, SECRET = "daohub-unit", "unit-client-secret"
REDIRECT = "http://127.0.0.1:9/apps/login/sso/callback"


@pytest.fixture(scope="module")
def op(oidc_op):
    global browser_ca
    browser_ca = oidc_op.ca_file
    oidc_op.add_client(CLIENT, SECRET, [REDIRECT])
    oidc_op.add_user("uma", OidcUser("uma-pw", "Uma Unit", "uma@example.test", ["devs", "readers"]))
    oidc_op.add_user("Odd Name", OidcUser("odd-pw", "Odd", "odd@example.test"))
    return oidc_op


def spec(op, **oidc) -> ProviderSpec:
    cfg = load_config(environ={}, overrides={"auth": {"enabled": True, "providers": [{
        "name": "sso", "type": "oidc",
        "oidc": {"issuer": op.issuer, "client_id": CLIENT, "client_secret": SECRET, "ca_file": str(op.ca_file),
                 **oidc}}]}})
    return cfg.auth.providers[0]


@pytest.fixture
async def provider(op):
    p = OidcProvider(spec(op))
    yield p
    await p.aclose()
    op.mode = ""


browser_ca = ""


async def browser_code(url: str, user: str, password: str) -> str:
    """What a person does at the provider: the login form, then consent; the code from the redirect."""
    import ssl

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(
            ssl=ssl.create_default_context(cafile=str(browser_ca)))) as http:
        async with http.get(url) as r:
            assert r.status == 200, await r.text()
            page = await r.text()
        query = re.search(r'name="query" value="([^"]*)"', page).group(1).replace("&amp;", "&")
        async with http.post(f"{url.split('/authorize')[0]}/login",
                             data={"query": query, "username": user, "password": password}) as r:
            consent = await r.text()
        cid = re.search(r'name=consent value="([^"]+)"', consent).group(1)
        async with http.post(f"{url.split('/authorize')[0]}/consent", data={"consent": cid, "allow": "yes"},
                             allow_redirects=False) as r:
            assert r.status == 302
            location = r.headers["Location"]
    assert location.startswith(REDIRECT)
    return parse_qs(urlsplit(location).query)["code"][0]


async def sign_in(provider: OidcProvider, user="uma", password="uma-pw"):
    state, nonce, verifier = provider.new_request_secrets()
    url = await provider.authorization_url(REDIRECT, state, nonce, verifier)
    q = parse_qs(urlsplit(url).query)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    assert q["code_challenge"] == [challenge] and q["code_challenge_method"] == ["S256"]
    assert q["state"] == [state] and q["nonce"] == [nonce] and q["response_type"] == ["code"]
    assert set(q["scope"][0].split()) >= {"openid", "groups"}
    code = await browser_code(url, user, password)
    return code, verifier, nonce


async def test_a_sign_in_gives_the_account_and_its_groups(provider):
    code, verifier, nonce = await sign_in(provider)
    identity = await provider.redeem_code(code, REDIRECT, verifier, nonce)
    account = identity.account
    assert (account.provider, account.username, account.display_name, account.email, account.groups) == (
        "sso", "uma", "Uma Unit", "uma@example.test", frozenset({"devs", "readers"}))
    assert identity.subject
    # The code works once: the provider refuses it the second time.
    with pytest.raises(SignInRefused, match="invalid_grant"):
        await provider.redeem_code(code, REDIRECT, verifier, nonce)


async def test_a_wrong_pkce_verifier_is_refused(provider):
    code, verifier, nonce = await sign_in(provider)
    with pytest.raises(SignInRefused, match="refused"):
        await provider.redeem_code(code, REDIRECT, verifier[:-1] + ("A" if verifier[-1] != "A" else "B"), nonce)


@pytest.mark.parametrize("mode, reason", [
    ("wrong-aud", "aud"), ("expired", "expired"), ("alg-none", "'none' is not allowed"),
    ("hs256-public", "'HS256' is not allowed"), ("wrong-nonce", "nonce"), ("wrong-iss", "iss"),
    ("unknown-key", "invalid_key_id"),
])
async def test_bad_id_tokens_are_refused(provider, op, mode, reason):
    code, verifier, nonce = await sign_in(provider)
    op.mode = mode
    with pytest.raises(SignInRefused, match=reason):
        await provider.redeem_code(code, REDIRECT, verifier, nonce)


async def test_hs256_is_refused_even_when_an_admin_could_not_allow_it(op):
    # HMAC algorithms cannot be allowed at all: the config check names the choices.
    with pytest.raises(ConfigError, match="HS256"):
        spec(op, allowed_algs=["RS256", "HS256"])
    with pytest.raises(ConfigError, match="none"):
        spec(op, allowed_algs=["none"])


async def test_a_name_that_is_not_a_daohub_name_is_refused(provider):
    code, verifier, nonce = await sign_in(provider, "Odd Name", "odd-pw")
    with pytest.raises(SignInRefused, match="not a DaoHub user name"):
        await provider.redeem_code(code, REDIRECT, verifier, nonce)


async def test_discovery_must_name_the_issuer_and_endpoints_on_its_origin(op):
    p = OidcProvider(spec(op, token_endpoint="https://127.0.0.1:1/token"))
    try:  # an explicitly configured endpoint is used instead of the discovered one
        assert (await p.endpoints()).token == "https://127.0.0.1:1/token"
    finally:
        await p.aclose()
    p = OidcProvider(spec(op))
    p.issuer = op.issuer + "/other"  # discovery there does not exist
    try:
        with pytest.raises(ProviderUnavailable):
            await p.endpoints()
    finally:
        await p.aclose()
    p = OidcProvider(spec(op, issuer="https://127.0.0.1:1"))  # nobody listens
    try:
        with pytest.raises(ProviderUnavailable, match="unavailable"):
            await p.endpoints()
    finally:
        await p.aclose()


def test_config_errors_name_the_key(op):
    base = {"name": "sso", "type": "oidc", "oidc": {"issuer": "https://idp.example", "client_id": "c"}}
    for oidc, message in [
        ({"issuer": "ftp://idp.example"}, "issuer"),
        ({"issuer": "http://idp.example"}, "loopback"),
        ({"client_id": ""}, "client_id"),
        ({"client_secret": "a", "client_secret_file": "/x"}, "not both"),
        ({"groups_claim": "bad claim"}, "groups_claim"),
        ({"allowed_algs": []}, "allowed_algs"),
        ({"jwks_uri": "https://u:p@idp.example/jwks"}, "jwks_uri"),
    ]:
        item = {**base, "oidc": {**base["oidc"], **oidc}}
        with pytest.raises(ConfigError, match=message):
            load_config(environ={}, overrides={"auth": {"enabled": True, "providers": [item]}})
    secret = spec(op)
    assert SECRET not in repr(secret) and SECRET not in repr(OidcProvider(secret))
    check_providers([secret])


async def test_the_client_secret_from_a_file(op, tmp_path):
    secret_file = tmp_path / "oidc-secret"
    secret_file.write_text(SECRET + "\n")  # a mounted secret's trailing newline is dropped
    cfg = spec(op)
    cfg.oidc.client_secret = type(cfg.oidc.client_secret)("")
    cfg.oidc.client_secret_file = str(secret_file)
    p = OidcProvider(cfg)
    try:
        code, verifier, nonce = await sign_in(p)
        assert (await p.redeem_code(code, REDIRECT, verifier, nonce)).account.username == "uma"
    finally:
        await p.aclose()
    secret_file.write_text("wrong-secret")
    p = OidcProvider(cfg)
    try:
        code, verifier, nonce = await sign_in(p)
        with pytest.raises(SignInRefused, match="invalid_client"):
            await p.redeem_code(code, REDIRECT, verifier, nonce)
    finally:
        await p.aclose()
    secret_file.write_text("")
    with pytest.raises(ValueError, match="is empty"):
        OidcProvider(cfg)
