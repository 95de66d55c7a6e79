"""A fake OpenID Connect provider, for signing in with the authorization-code flow and PKCE.

Served over real HTTP on loopback: the discovery document, a JWKS of an RSA key it makes, an
authorize endpoint that signs `person` in at once (no login page) and redirects back with a code,
and a token endpoint that holds the exchange to what a real provider checks: the code is one it
issued and unused, for this client and this redirect URI, and SHA-256 of the verifier is the
challenge it was issued for (RFC 7636, S256). Its id_token carries the nonce; its access token is
opaque unless `access_token_audience` is set (then a JWT for that audience)."""

import base64
import hashlib
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa


@dataclass
class _Grant:
    client_id: str
    redirect_uri: str
    challenge: str
    nonce: str
    claims: dict[str, Any]


@dataclass
class FakeIdentityProvider:
    client_id: str = "parley-web"
    client_secret: str = ""
    person: dict[str, Any] = field(default_factory=lambda: {"sub": "ada", "name": "Ada"})
    token_seconds: int = 300
    access_token_audience: str = ""
    # What each endpoint was asked, to assert on.
    authorizations: list[dict[str, str]] = field(default_factory=list)
    exchanges: list[dict[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self._key.public_key()))
        self.jwks = {"keys": [{**jwk, "kid": "idp-1", "use": "sig", "alg": "RS256"}]}
        self._grants: dict[str, _Grant] = {}
        self._server: ThreadingHTTPServer | None = None
        self._stopped = False

    @property
    def issuer(self) -> str:
        assert self._server is not None, "start the provider first"
        return f"http://127.0.0.1:{self._server.server_port}"

    def sign(self, claims: dict[str, Any]) -> str:
        now = int(time.time())
        body = {"iss": self.issuer, "iat": now, "exp": now + self.token_seconds, **claims}
        return jwt.encode(body, self._key, algorithm="RS256", headers={"kid": "idp-1"})

    def __enter__(self) -> "FakeIdentityProvider":
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlsplit(self.path)
                if url.path == "/.well-known/openid-configuration":
                    self._json(200, provider.discovery())
                elif url.path == "/jwks.json":
                    self._json(200, provider.jwks)
                elif url.path == "/authorize":
                    provider.authorize(self, {k: v[0] for k, v in parse_qs(url.query).items()})
                else:
                    self._json(404, {"error": "not_found"})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                if urlsplit(self.path).path != "/token":
                    self._json(404, {"error": "not_found"})
                    return
                status, body = provider.token(form, self.headers.get("Authorization", ""))
                self._json(status, body)

            def _json(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop answering (the provider is down from here on); again is a no-op."""
        if self._server is not None and not self._stopped:
            self._stopped = True
            self._server.shutdown()
            self._server.server_close()

    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token",
            "jwks_uri": f"{self.issuer}/jwks.json",
            "response_types_supported": ["code"],
            "code_challenge_methods_supported": ["S256"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": ["none", "client_secret_basic"],
        }

    def authorize(self, handler: BaseHTTPRequestHandler, query: dict[str, str]) -> None:
        self.authorizations.append(query)
        redirect = query.get("redirect_uri", "")
        problem = ""
        if query.get("client_id") != self.client_id:
            problem = "unknown client"
        elif query.get("response_type") != "code" or query.get("code_challenge_method") != "S256":
            problem = "code flow with S256 only"
        elif not query.get("code_challenge") or "openid" not in query.get("scope", "").split():
            problem = "a code challenge and the openid scope are required"
        if problem or not redirect:
            body = problem.encode() or b"no redirect_uri"
            handler.send_response(400)
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            handler.wfile.write(body)
            return
        code = secrets.token_urlsafe(24)
        self._grants[code] = _Grant(
            self.client_id, redirect, query["code_challenge"], query.get("nonce", ""), dict(self.person)
        )
        handler.send_response(302)
        handler.send_header("Location", f"{redirect}?{urlencode({'code': code, 'state': query.get('state', '')})}")
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    def issue_code(self, *, redirect_uri: str, verifier: str, nonce: str) -> str:
        """A code as the authorize endpoint would give one (for tests without a browser)."""
        code = secrets.token_urlsafe(24)
        self._grants[code] = _Grant(self.client_id, redirect_uri, challenge_of(verifier), nonce, dict(self.person))
        return code

    def token(self, form: dict[str, str], authorization: str) -> tuple[int, dict[str, Any]]:
        self.exchanges.append(form)

        def refused(error: str, description: str) -> tuple[int, dict[str, Any]]:
            return 400, {"error": error, "error_description": description}

        if form.get("grant_type") != "authorization_code":
            return refused("unsupported_grant_type", "authorization_code only")
        if self.client_secret:
            expected = base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
            if authorization != f"Basic {expected}":
                return 401, {"error": "invalid_client", "error_description": "client authentication failed"}
        grant = self._grants.pop(form.get("code", ""), None)
        if grant is None:
            return refused("invalid_grant", "the code is not valid or was used")
        if form.get("client_id") != grant.client_id:
            return refused("invalid_grant", "the code was issued to another client")
        if form.get("redirect_uri") != grant.redirect_uri:
            return refused("invalid_grant", "redirect_uri does not match the authorization request")
        if not form.get("code_verifier"):
            return refused("invalid_request", "code_verifier is required")
        if challenge_of(form["code_verifier"]) != grant.challenge:
            return refused("invalid_grant", "PKCE verification failed")
        id_token = self.sign({**grant.claims, "aud": self.client_id, "nonce": grant.nonce})
        access_token = secrets.token_urlsafe(32)
        if self.access_token_audience:
            access_token = self.sign({**grant.claims, "aud": self.access_token_audience})
        return 200, {
            "access_token": access_token,
            "id_token": id_token,
            "token_type": "Bearer",
            "expires_in": self.token_seconds,
            "scope": "openid profile email",
        }


def challenge_of(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")
