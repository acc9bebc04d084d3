"""An OpenID Connect provider (`type: oidc`): the authorization-code flow with PKCE for the web
pages, over discovery (`<issuer>/.well-known/openid-configuration`) and the provider's JWKS.

The protocol is authlib's: the authorization request (`prepare_grant_uri`), PKCE's S256
challenge (`create_s256_code_challenge`), the token request (`prepare_token_request` with
`ClientAuth`'s client_secret_basic), and the ID token's signature and claims (joserfc, authlib's
JOSE library: `jwt.decode` with an algorithm allow-list, `JWTClaimsRegistry` for iss, aud, exp,
iat, nonce and sub). This module only moves the bytes (aiohttp's client) and decides what DaoHub
dials: the configured issuer, and the endpoints its discovery document names on the issuer's own
origin (scheme, host, port), or endpoints the admin configured explicitly. Redirects are never
followed.

OIDC has no password: `check_password` says no, and the account is what the provider's last ID
token said of the user, which AuthService records at each browser sign-in (`interactive`).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
from authlib.common.security import generate_token
from authlib.oauth2.auth import ClientAuth
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri, prepare_token_request
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet

from ..provider_settings import NAME_RE, ProviderSpec
from .base import DirectoryAccount, IdentityProvider, ProviderUnavailable

log = logging.getLogger("daohub.auth.oidc")

DISCOVERY_PATH = "/.well-known/openid-configuration"
METADATA_TTL = 3600.0      # discovery and JWKS are read again after this long
JWKS_RELOAD_INTERVAL = 10.0  # a token with an unknown kid fetches the JWKS again at most this often
CLOCK_LEEWAY = 30           # seconds of clock skew allowed on exp, iat and nbf
MAX_RESPONSE = 1 << 20


class SignInRefused(Exception):
    """The provider's answer does not sign anyone in (bad token, wrong state, error from the
    provider). The message is safe to show."""


@dataclass(frozen=True, slots=True)
class Endpoints:
    authorization: str
    token: str
    jwks: str


@dataclass(frozen=True, slots=True)
class OidcIdentity:
    """Who an ID token says signed in."""

    subject: str
    account: DirectoryAccount


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    port = parts.port or {"https": 443, "http": 80}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), port


class OidcProvider(IdentityProvider):
    interactive = True

    def __init__(self, spec: ProviderSpec):
        self.name = spec.name
        self.cache_seconds = spec.cache_seconds
        self.mappings = tuple(spec.group_mappings)
        self.settings = s = spec.oidc
        self.display_name = s.display_name or spec.name
        secret = s.client_secret.reveal() if s.client_secret else ""
        if s.client_secret_file:
            secret = Path(s.client_secret_file).read_text().rstrip("\r\n")
            if not secret:
                raise ValueError(f"auth.providers {spec.name}: {s.client_secret_file} is empty")
        self._client_secret = secret
        self.issuer = s.issuer
        self._ssl: ssl.SSLContext | bool
        if not s.verify_tls:
            self._ssl = False
        else:
            self._ssl = ssl.create_default_context(cafile=s.ca_file or None)
        self._session: aiohttp.ClientSession | None = None
        self._endpoints: Endpoints | None = None
        self._endpoints_at = 0.0
        self._keys: KeySet | None = None
        self._keys_at = 0.0
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"OidcProvider(name={self.name!r}, issuer={self.issuer!r}, client_secret='***')"

    # IdentityProvider -------------------------------------------------------------------------------
    async def check_password(self, username: str, password: str) -> DirectoryAccount | None:
        return None  # no passwords here: CLI secrets (AuthService) stand in for them

    async def lookup(self, username: str) -> DirectoryAccount | None:
        return None  # an OIDC provider cannot be asked about a user; AuthService keeps what it said

    def normalise_group(self, group: str) -> str:
        return group

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # HTTP -------------------------------------------------------------------------------------------
    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.settings.timeout_seconds),
                connector=aiohttp.TCPConnector(ssl=self._ssl, limit=16))
        return self._session

    async def _request(self, method: str, url: str, *, headers=None, data=None) -> tuple[int, dict]:
        """A JSON answer of the provider; ProviderUnavailable when it cannot be had."""
        try:
            async with self._client().request(method, url, headers=headers, data=data,
                                              allow_redirects=False) as r:
                body = await r.content.read(MAX_RESPONSE + 1)
                status = r.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            log.warning("identity provider %s: %s %s failed: %s", self.name, method, url, exc)
            raise ProviderUnavailable(f"identity provider {self.name} is unavailable") from None
        if status >= 500 or status in (429, 408) or len(body) > MAX_RESPONSE:
            log.warning("identity provider %s: %s %s answered %s", self.name, method, url, status)
            raise ProviderUnavailable(f"identity provider {self.name} is unavailable")
        try:
            doc = json.loads(body)
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            log.warning("identity provider %s: %s %s answered %s without a JSON object", self.name, method, url,
                        status)
            raise ProviderUnavailable(f"identity provider {self.name} answered something that is not JSON")
        return status, doc

    # Discovery and keys ---------------------------------------------------------------------------------
    async def endpoints(self) -> Endpoints:
        now = time.monotonic()
        if self._endpoints is not None and now - self._endpoints_at < METADATA_TTL:
            return self._endpoints
        async with self._lock:
            if self._endpoints is None or time.monotonic() - self._endpoints_at >= METADATA_TTL:
                self._endpoints = await self._discover()
                self._endpoints_at = time.monotonic()
        return self._endpoints

    async def _discover(self) -> Endpoints:
        status, doc = await self._request("GET", self.issuer.rstrip("/") + DISCOVERY_PATH)
        if status != 200:
            raise ProviderUnavailable(f"identity provider {self.name}: discovery answered {status}")
        if doc.get("issuer") != self.issuer:
            log.warning("identity provider %s: discovery names issuer %r, configured %r", self.name,
                        doc.get("issuer"), self.issuer)
            raise ProviderUnavailable(f"identity provider {self.name}: discovery names another issuer")
        s = self.settings
        found = {}
        for key, configured in (("authorization_endpoint", s.authorization_endpoint),
                                ("token_endpoint", s.token_endpoint), ("jwks_uri", s.jwks_uri)):
            url = configured or doc.get(key)
            if not isinstance(url, str) or not url:
                raise ProviderUnavailable(f"identity provider {self.name}: discovery names no {key}")
            if not configured and _origin(url) != _origin(self.issuer):
                # Only what the admin configured is dialled: an endpoint elsewhere must be set explicitly.
                log.warning("identity provider %s: discovered %s %s is not on the issuer's origin", self.name,
                            key, url)
                raise ProviderUnavailable(f"identity provider {self.name}: {key} is not on the issuer's origin "
                                          f"(configure it explicitly to allow it)")
            found[key] = url
        methods = doc.get("code_challenge_methods_supported")
        if isinstance(methods, list) and "S256" not in methods:
            raise ProviderUnavailable(f"identity provider {self.name} does not support PKCE with S256")
        return Endpoints(found["authorization_endpoint"], found["token_endpoint"], found["jwks_uri"])

    async def _key_set(self, reload: bool = False) -> KeySet:
        now = time.monotonic()
        stale = self._keys is None or now - self._keys_at >= METADATA_TTL
        if reload and self._keys is not None and now - self._keys_at < JWKS_RELOAD_INTERVAL:
            return self._keys  # reloaded a moment ago: a made-up kid must not make a fetch each
        if stale or reload:
            endpoints = await self.endpoints()
            status, doc = await self._request("GET", endpoints.jwks)
            keys = doc.get("keys")
            if status != 200 or not isinstance(keys, list):
                raise ProviderUnavailable(f"identity provider {self.name}: its JWKS could not be read")
            usable = [k for k in keys if isinstance(k, dict) and k.get("use", "sig") == "sig"
                      and k.get("kty") in ("RSA", "EC", "OKP")]  # never a symmetric ("oct") key
            try:
                self._keys = KeySet.import_key_set({"keys": usable})
            except (JoseError, ValueError, TypeError) as exc:
                raise ProviderUnavailable(f"identity provider {self.name}: its JWKS is malformed ({exc})") from None
            self._keys_at = time.monotonic()
        assert self._keys is not None
        return self._keys

    # The flow ----------------------------------------------------------------------------------------------
    @staticmethod
    def new_request_secrets() -> tuple[str, str, str]:
        """(state, nonce, PKCE code verifier) for one sign-in."""
        return generate_token(43), generate_token(43), generate_token(64)

    async def authorization_url(self, redirect_uri: str, state: str, nonce: str, code_verifier: str) -> str:
        endpoints = await self.endpoints()
        scopes = list(dict.fromkeys(["openid", *self.settings.scopes]))
        return prepare_grant_uri(endpoints.authorization, self.settings.client_id, "code", redirect_uri=redirect_uri,
                                 scope=scopes, state=state, nonce=nonce,
                                 code_challenge=create_s256_code_challenge(code_verifier),
                                 code_challenge_method="S256")

    async def redeem_code(self, code: str, redirect_uri: str, code_verifier: str, nonce: str) -> OidcIdentity:
        """Exchange the code (once: the provider refuses a code used before) and validate the ID token."""
        endpoints = await self.endpoints()
        body = prepare_token_request("authorization_code", code=code, redirect_uri=redirect_uri,
                                     code_verifier=code_verifier, client_id=self.settings.client_id)
        headers = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}
        method = "client_secret_basic" if self._client_secret else "none"
        _, headers, body = ClientAuth(self.settings.client_id, self._client_secret, method).prepare(
            "POST", endpoints.token, headers, body)
        status, doc = await self._request("POST", endpoints.token, headers=headers, data=body)
        if status != 200:
            error = str(doc.get("error", status))[:100]
            log.info("identity provider %s refused the code: %s", self.name, error)
            raise SignInRefused(f"{self.display_name} refused the sign-in ({error})")
        id_token = doc.get("id_token")
        if not isinstance(id_token, str) or not id_token:
            raise SignInRefused(f"{self.display_name} sent no ID token")
        return await self.validate_id_token(id_token, nonce)

    async def validate_id_token(self, id_token: str, nonce: str) -> OidcIdentity:
        allowed = list(self.settings.allowed_algs)
        try:
            header = json.loads(base64.urlsafe_b64decode(id_token.split(".")[0] + "=="))
            alg = header.get("alg") if isinstance(header, dict) else None
        except (ValueError, IndexError):
            alg = None
        if alg not in allowed:  # joserfc checks this too; this gives the clearer message
            raise SignInRefused(f"the ID token's algorithm {str(alg)[:20]!r} is not allowed")
        keys = await self._key_set()
        try:
            try:
                token = jwt.decode(id_token, keys, algorithms=allowed)
            except InvalidKeyIdError:  # the provider rotated its keys: read them again (rate limited)
                token = jwt.decode(id_token, await self._key_set(reload=True), algorithms=allowed)
        except JoseError as exc:
            raise SignInRefused(f"the ID token is not valid: {exc.error}") from None
        except (ValueError, TypeError) as exc:
            raise SignInRefused(f"the ID token is not valid: {str(exc)[:100]}") from None
        claims = token.claims
        registry = jwt.JWTClaimsRegistry(
            leeway=CLOCK_LEEWAY,
            iss={"essential": True, "value": self.issuer},
            aud={"essential": True, "value": self.settings.client_id},
            exp={"essential": True}, iat={"essential": True}, sub={"essential": True},
            nonce={"essential": True, "value": nonce})
        try:
            registry.validate(claims)
        except JoseError as exc:
            raise SignInRefused(f"the ID token is not valid: {exc.error} {exc.description or ''}".strip()) from None
        aud = claims.get("aud")
        if isinstance(aud, list) and len(aud) > 1 and claims.get("azp") != self.settings.client_id:
            raise SignInRefused("the ID token is for several audiences and not authorised for DaoHub (azp)")
        return OidcIdentity(str(claims["sub"]), self._account(claims))

    def _account(self, claims: dict) -> DirectoryAccount:
        s = self.settings
        raw = claims.get(s.username_claim)
        if not isinstance(raw, str) or not raw:
            raise SignInRefused(f"the ID token has no {s.username_claim!r} claim to name the account")
        username = raw.lower()
        if len(username) > 64 or not NAME_RE.fullmatch(username):
            raise SignInRefused(f"{raw[:64]!r} is not a DaoHub user name (lowercase letters, digits, '.', '_', '-')")
        groups = claims.get(s.groups_claim, [])
        if isinstance(groups, str):
            groups = [groups]
        if not isinstance(groups, list):
            groups = []
        name = claims.get("name")
        email = claims.get("email")
        return DirectoryAccount(self.name, username, name if isinstance(name, str) else "",
                                email if isinstance(email, str) else "",
                                frozenset(g for g in groups if isinstance(g, str) and g))
