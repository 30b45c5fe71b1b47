"""Data-plane authentication (HMAC-SHA256 access key, Entra Bearer) and the fake Entra authority.

HMAC is checked exactly as the SDK signs (reference §2.2); the authority answers what MSAL asks for
(reference §2.4). Secrets and tokens never reach a log or an error message.
UNCONFIRMED: the accepted ``x-ms-date`` clock skew (15 min here, as App Configuration documents) and the
401 texts other than the content-hash one.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Collection, Mapping
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from .responses import OAuthError, ServiceError, json_response

ACS_AUDIENCE = "https://communication.azure.com"
# The Python SDK asks for the double-slash scope; docs and other SDKs use the single-slash one.
ACS_SCOPES = frozenset({f"{ACS_AUDIENCE}//.default", f"{ACS_AUDIENCE}/.default"})
_OIDC_SCOPES = frozenset({"openid", "profile", "offline_access"})  # MSAL may add these; they are harmless
MAX_CLOCK_SKEW = 15 * 60
TOKEN_LIFETIME = 3600


def denied(message: str) -> ServiceError:
    return ServiceError(401, "Denied", message)


def derive_secret(access_key: bytes, purpose: str) -> bytes:
    """A stable secret for ``purpose``: the same access key gives the same tokens and demo secret after a restart."""
    return hmac.new(access_key, f"acs-email-emulator/{purpose}".encode(), hashlib.sha256).digest()


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


_JWT_HEADER = _b64url(b'{"alg":"HS256","typ":"JWT"}')


class HmacVerifier:
    """Recomputes the SDK's HMAC-SHA256 signature from method, raw target, signed headers and raw body."""

    def __init__(self, access_key: bytes) -> None:
        self._key = access_key

    def verify(self, method: str, target: str, headers: Mapping[str, str], body: bytes, credential: str) -> None:
        params = dict(part.partition("=")[::2] for part in credential.split("&"))
        signed, signature = params.get("SignedHeaders", ""), params.get("Signature", "")
        names = signed.lower().split(";")
        if not signature or "host" not in names or "x-ms-content-sha256" not in names:
            raise denied("The HMAC-SHA256 authorization header is incomplete.")
        content_hash = base64.b64encode(hashlib.sha256(body).digest()).decode()
        if headers.get("x-ms-content-sha256") != content_hash:
            raise denied("Request 'x-ms-content-sha256' differs from generated content hash.")
        self._check_date(headers.get("x-ms-date") or headers.get("date") or "")
        signed_values = ";".join(headers.get(name, "") for name in names)
        # The async SDK signs the unquoted path, the sync one the path as sent: accept both spellings.
        for path in dict.fromkeys((target, unquote(target))):
            string_to_sign = f"{method.upper()}\n{path}\n{signed_values}"
            expected = base64.b64encode(hmac.new(self._key, string_to_sign.encode(), hashlib.sha256).digest())
            if hmac.compare_digest(expected, signature.encode()):
                return
        raise denied("The request signature does not match the signature computed with the access key.")

    @staticmethod
    def _check_date(value: str) -> None:
        try:
            sent = parsedate_to_datetime(value).timestamp()
        except (TypeError, ValueError):
            raise denied("The request has no valid 'x-ms-date' header.") from None
        if abs(time.time() - sent) > MAX_CLOCK_SKEW:
            raise denied("The request's 'x-ms-date' is too far from the service's clock.")


def authenticate(request: web.Request, body: bytes, hmac_verifier: HmacVerifier, authority: Authority) -> None:
    """Check the ``Authorization`` header of a data-plane request (HMAC or Bearer)."""
    scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
    if scheme == "HMAC-SHA256":
        hmac_verifier.verify(request.method, request.raw_path, request.headers, body, credential)
    elif scheme.lower() == "bearer":
        authority.verify(credential)
    else:
        raise denied("The request has no HMAC-SHA256 or Bearer authorization.")


class Authority:
    """A fake Entra ID tenant: client-credentials tokens (HS256 JWTs) for known principals.

    Every principal gets tokens, but only those with a role on the resource may use them on the data plane;
    the others get the 403 Azure RBAC answers (UNCONFIRMED for ACS: the ARM ``AuthorizationFailed`` shape).
    """

    def __init__(
        self, clients: Mapping[tuple[str, str], str], signing_key: bytes, without_role: Collection[str] = ()
    ) -> None:
        self._clients = dict(clients)
        self._tenants = {tenant for tenant, _ in clients}
        self._key = signing_key
        self._without_role = frozenset(without_role)

    def issue(self, tenant: str, client_id: str, lifetime: float = TOKEN_LIFETIME) -> str:
        """A token for ``client_id``; a negative ``lifetime`` makes an already expired one (tests)."""
        now = int(time.time())
        claims = {
            "aud": ACS_AUDIENCE,
            "iss": f"https://sts.windows.net/{tenant}/",
            "tid": tenant,
            "appid": client_id,
            "iat": now,
            "nbf": now,
            "exp": int(now + lifetime),
        }
        signing_input = f"{_JWT_HEADER}.{_b64url(json.dumps(claims).encode())}"
        return f"{signing_input}.{self._sign(signing_input)}"

    def _sign(self, signing_input: str) -> str:
        return _b64url(hmac.new(self._key, signing_input.encode(), hashlib.sha256).digest())

    def verify(self, token: str) -> None:
        """Accept only unexpired tokens this authority issued for the ACS audience."""
        signing_input, _, signature = token.strip().rpartition(".")
        if not signing_input or not hmac.compare_digest(self._sign(signing_input), signature):
            raise denied("The access token is not valid for this resource.")
        try:
            claims: dict[str, Any] = json.loads(_b64url_decode(signing_input.partition(".")[2]))
        except (binascii.Error, ValueError):
            raise denied("The access token is not valid for this resource.") from None
        if claims.get("aud") != ACS_AUDIENCE:
            raise denied("The access token was issued for another audience.")
        if claims.get("exp", 0) <= time.time():
            raise denied("The access token has expired.")
        client_id = claims.get("appid")
        if client_id in self._without_role:
            raise ServiceError(
                403,
                "AuthorizationFailed",
                f"The client '{client_id}' does not have authorization to perform action "
                "'Microsoft.Communication/CommunicationServices/Write' over this resource or the scope is "
                "invalid. If access was recently granted, please refresh your credentials.",
            )

    # ---- the Entra endpoints MSAL calls --------------------------------------------------------------------
    def _known_tenant(self, request: web.Request) -> str:
        tenant = request.match_info["tenant"]
        if tenant not in self._tenants:
            raise OAuthError(
                400,
                "invalid_tenant",
                f"AADSTS90002: Tenant '{tenant}' not found. Check to make sure you have "
                "the correct tenant ID and are signing into the correct cloud.",
            )
        return tenant

    async def openid_configuration(self, request: web.Request) -> web.Response:
        """``GET /{tenant}/v2.0/.well-known/openid-configuration``; MSAL needs token + authorization endpoints."""
        tenant = self._known_tenant(request)
        base = f"{request.scheme}://{request.host}/{tenant}"
        return json_response(
            {
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "issuer": f"{base}/v2.0",
                "jwks_uri": f"{base}/discovery/v2.0/keys",
                "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
                "response_types_supported": ["code", "id_token", "token"],
                "scopes_supported": ["openid", "profile", "email", "offline_access"],
            }
        )

    async def token(self, request: web.Request) -> web.Response:
        """``POST /{tenant}/oauth2/v2.0/token`` with the client-credentials grant."""
        tenant = self._known_tenant(request)
        form = await request.post()
        grant_type, client_id = str(form.get("grant_type", "")), str(form.get("client_id", ""))
        if grant_type != "client_credentials":
            raise OAuthError(
                400,
                "unsupported_grant_type",
                f"AADSTS70003: The app requested an unsupported grant type '{grant_type}'.",
            )
        expected = self._clients.get((tenant, client_id))
        if expected is None:
            raise OAuthError(
                400,
                "unauthorized_client",
                f"AADSTS700016: Application with identifier '{client_id}' was not found in the directory '{tenant}'.",
            )
        if not hmac.compare_digest(str(form.get("client_secret", "")).encode(), expected.encode()):
            raise OAuthError(
                401,
                "invalid_client",
                "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the "
                f"client secret value, not the client secret ID, for a secret added to app '{client_id}'.",
            )
        scopes = set(str(form.get("scope", "")).split()) - _OIDC_SCOPES
        if not scopes or not scopes <= ACS_SCOPES:
            raise OAuthError(
                400,
                "invalid_scope",
                f"AADSTS500011: The resource principal named {' '.join(sorted(scopes))} was not found in the "
                f"tenant named {tenant}.",
            )
        return json_response(
            {
                "token_type": "Bearer",
                "expires_in": TOKEN_LIFETIME,
                "ext_expires_in": TOKEN_LIFETIME,
                "access_token": self.issue(tenant, client_id),
            }
        )
