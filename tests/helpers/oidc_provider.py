"""A real OpenID Connect provider on loopback for the tests, built on pyop (a maintained OpenID
Connect provider library: authorization and token endpoints, one-time codes, PKCE, signed ID
tokens) behind a small HTTP server of the standard library, on a port the kernel picks.

Endpoints: discovery (`/.well-known/openid-configuration`), the JWKS (`/jwks`), `/authorize`
(a login form, then a consent page, then the redirect back with the code) and `/token`. Users
have a password and groups; the ID token carries `preferred_username`, `name`, `email` and
`groups` (pyop's `extra_id_token_claims`, read when the code is redeemed).

For the refusal tests the token endpoint has a `mode` that replaces the ID token pyop signed by
one minted here with a key the test controls: `wrong-aud`, `expired`, `alg-none` (no signature),
`hs256-public` (HMAC keyed with the public key's PEM: the key-confusion attack), `wrong-nonce`,
`wrong-iss`, `unknown-key` (a key the JWKS does not have).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import secrets
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode

from Cryptodome.PublicKey.RSA import import_key as import_rsa_key  # jwkest's key type
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc import jwt
from joserfc.jwk import RSAKey as JoseRSAKey
from jwkest.jwk import RSAKey
from oic.oic.message import AuthorizationRequest
from pyop.authz_state import AuthorizationState
from pyop.exceptions import InvalidAuthenticationRequest, InvalidClientAuthentication, OAuthError
from pyop.provider import Provider
from pyop.subject_identifier import HashBasedSubjectIdentifierFactory
from pyop.userinfo import Userinfo
from pyop.util import should_fragment_encode

MODES = ("", "wrong-aud", "expired", "alg-none", "hs256-public", "wrong-nonce", "wrong-iss", "unknown-key")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


@dataclass
class OidcUser:
    password: str
    name: str
    email: str
    groups: list[str] = field(default_factory=list)
    username: str = ""  # preferred_username (defaults to the key)


class OidcTestProvider:
    def __init__(self, pki, host: str = "127.0.0.1"):
        # HTTPS (pyop insists on an https issuer), with a certificate of the tests' private CA:
        # clients check it against `ca_file`.
        self.ca_file = pki.ca_file
        self.server = ThreadingHTTPServer((host, 0), _Handler)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(pki.cert_file, pki.key_file)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.server.op = self  # type: ignore[attr-defined]
        self.issuer = f"https://{host}:{self.server.server_address[1]}"
        self.users: dict[str, OidcUser] = {}
        self.clients: dict[str, dict] = {}
        self.mode = ""
        self.token_requests = 0
        self._pending: dict[str, tuple[str, str]] = {}  # consent id -> (authorization query, user)
        self._lock = threading.Lock()
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.private_pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                 serialization.NoEncryption())
        self.public_pem = private.public_key().public_bytes(serialization.Encoding.PEM,
                                                            serialization.PublicFormat.SubjectPublicKeyInfo)
        self.kid = "test-key-1"
        self.jose_key = JoseRSAKey.import_key(self.private_pem, parameters={"kid": self.kid})
        self.other_key = JoseRSAKey.generate_key(2048, parameters={"kid": "not-published"})
        signing_key = RSAKey(key=import_rsa_key(self.private_pem), alg="RS256", kid=self.kid, use="sig")
        config = {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token",
            "jwks_uri": f"{self.issuer}/jwks",
            "response_types_supported": ["code"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_modes_supported": ["query"],
            "subject_types_supported": ["public"],
            "grant_types_supported": ["authorization_code"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "code_challenge_methods_supported": ["S256"],
            "claims_supported": ["sub", "name", "email", "preferred_username", "groups"],
            "scopes_supported": ["openid", "profile", "email", "groups"],
        }
        self._userinfo: dict[str, dict] = {}
        self.provider = Provider(signing_key, config,
                                 AuthorizationState(HashBasedSubjectIdentifierFactory(secrets.token_hex(8))),
                                 self.clients, Userinfo(self._userinfo), extra_scopes={"groups": ["groups"]})
        self._thread: threading.Thread | None = None

    # Set-up -------------------------------------------------------------------------------------------
    def add_client(self, client_id: str, secret: str, redirect_uris: list[str]) -> None:
        self.clients[client_id] = {"client_secret": secret, "redirect_uris": redirect_uris,
                                   "response_types": ["code"], "token_endpoint_auth_method": "client_secret_basic"}

    def add_user(self, user_id: str, user: OidcUser) -> None:
        self.users[user_id] = user
        self._userinfo[user_id] = {"name": user.name, "email": user.email}

    def start(self) -> OidcTestProvider:
        self._thread = threading.Thread(target=self.server.serve_forever, name="oidc-test-provider", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # Flow pieces -----------------------------------------------------------------------------------------
    def claims_for(self, user_id: str) -> dict:
        user = self.users[user_id]
        return {"preferred_username": user.username or user_id, "name": user.name, "email": user.email,
                "groups": list(user.groups)}

    def consent_id(self, query: str, user_id: str) -> str:
        cid = secrets.token_urlsafe(16)
        with self._lock:
            self._pending[cid] = (query, user_id)
        return cid

    def take_consent(self, cid: str) -> tuple[str, str] | None:
        with self._lock:
            return self._pending.pop(cid, None)

    def mint(self, claims: dict, mode: str) -> str:
        """An ID token from pyop's claims, changed as `mode` says."""
        claims = dict(claims)
        now = int(time.time())
        if mode == "wrong-aud":
            claims["aud"] = "someone-else"
        elif mode == "expired":
            claims["iat"], claims["exp"] = now - 1200, now - 600
        elif mode == "wrong-nonce":
            claims["nonce"] = "not-the-nonce"
        elif mode == "wrong-iss":
            claims["iss"] = "https://127.0.0.1:1"
        if mode == "alg-none":
            return f"{_b64(json.dumps({'alg': 'none', 'typ': 'JWT'}).encode())}.{_b64(json.dumps(claims).encode())}."
        if mode == "hs256-public":
            head = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": self.kid}).encode())
            body = _b64(json.dumps(claims).encode())
            mac = hmac.new(self.public_pem, f"{head}.{body}".encode(), hashlib.sha256).digest()
            return f"{head}.{body}.{_b64(mac)}"
        key = self.other_key if mode == "unknown-key" else self.jose_key
        return jwt.encode({"alg": "RS256", "kid": key.kid}, claims, key)


class _Handler(BaseHTTPRequestHandler):
    server: ThreadingHTTPServer

    def log_message(self, format, *args):  # noqa: A002 (quiet)
        pass

    @property
    def op(self) -> OidcTestProvider:
        return self.server.op  # type: ignore[attr-defined]

    def _send(self, status: int, body: str | bytes, content_type: str = "application/json",
              headers: dict | None = None) -> None:
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _page(self, title: str, body: str, status: int = 200) -> None:
        self._send(status, f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{title}</title></head>"
                           f"<body><h1>{title}</h1>{body}</body></html>", "text/html; charset=utf-8")

    def _form(self) -> dict[str, str]:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode()
        self._raw = raw
        return {k: v[0] for k, v in parse_qs(raw, keep_blank_values=True).items()}

    def do_GET(self):  # noqa: N802
        path, _, query = self.path.partition("?")
        op = self.op
        if path == "/.well-known/openid-configuration":
            return self._send(200, op.provider.provider_configuration.to_json())
        if path == "/jwks":
            return self._send(200, json.dumps(op.provider.jwks))
        if path == "/authorize":
            try:
                op.provider.parse_authentication_request(query, dict(self.headers))
            except InvalidAuthenticationRequest as exc:
                return self._page("Bad request", f"<p>{html.escape(str(exc))}</p>", 400)
            return self._login_form(query, "")
        self._send(404, '{"error": "not found"}')

    def _login_form(self, query: str, error: str) -> None:
        self._page("Sign in to the test provider", (f'<p role="alert">{html.escape(error)}</p>' if error else "") +
                   '<form method="post" action="/login">'
                   f'<input type="hidden" name="query" value="{html.escape(query)}">'
                   '<label for="u">Username</label><input id="u" name="username">'
                   '<label for="p">Password</label><input id="p" name="password" type="password">'
                   '<button type="submit">Log in</button></form>')

    def do_POST(self):  # noqa: N802
        op = self.op
        form = self._form()
        if self.path == "/login":
            user = op.users.get(form.get("username", ""))
            if user is None or not hmac.compare_digest(user.password, form.get("password", "")):
                return self._login_form(form.get("query", ""), "Wrong username or password.")
            cid = op.consent_id(form.get("query", ""), form["username"])
            client = parse_qs(form.get("query", "")).get("client_id", ["?"])[0]
            return self._page("Consent", f"<p>Allow <b>{html.escape(client)}</b> to know who you are and your "
                              "groups?</p><form method=post action=/consent>"
                              f'<input type=hidden name=consent value="{cid}">'
                              '<button type=submit name=allow value=yes>Allow</button>'
                              '<button type=submit name=allow value=no>Deny</button></form>')
        if self.path == "/consent":
            pending = op.take_consent(form.get("consent", ""))
            if pending is None:
                return self._page("Bad request", "<p>no such consent</p>", 400)
            query, user_id = pending
            request = op.provider.parse_authentication_request(query, dict(self.headers))
            if form.get("allow") != "yes":
                err = {"error": "access_denied", "state": request.get("state", "")}
                return self._send(302, "", "text/plain", {"Location": f"{request['redirect_uri']}?{urlencode(err)}"})
            response = op.provider.authorize(request, user_id)
            url = response.request(request["redirect_uri"], should_fragment_encode(request))
            return self._send(302, "", "text/plain", {"Location": url})
        if self.path == "/token":
            op.token_requests += 1
            try:
                response = op.provider.handle_token_request(self._raw, dict(self.headers),
                                                            lambda user_id, _client: op.claims_for(user_id))
            except InvalidClientAuthentication as exc:
                return self._send(401, json.dumps({"error": "invalid_client", "error_description": str(exc)}))
            except OAuthError as exc:
                return self._send(400, json.dumps({"error": exc.oauth_error, "error_description": str(exc)}))
            doc = response.to_dict()
            if op.mode:
                claims = jwt.decode(doc["id_token"], op.jose_key).claims
                doc["id_token"] = op.mint(claims, op.mode)
            return self._send(200, json.dumps(doc), headers={"Cache-Control": "no-store"})
        self._send(404, '{"error": "not found"}')


__all__ = ["MODES", "AuthorizationRequest", "OidcTestProvider", "OidcUser"]
