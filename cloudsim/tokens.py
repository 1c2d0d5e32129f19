"""Access tokens: minted by the managed-identity endpoint, checked by every API.

Tokens are unsigned JWTs (`alg: none`): opaque to the SDKs, as real tokens are,
but the simulator can read the audience back. They prove nothing and must never
be accepted by anything but this simulator.
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass

from cloudsim.state import ADO_RESOURCE_APP_ID

GRAPH_AUDIENCES = frozenset({"https://graph.microsoft.com", "00000003-0000-0000-c000-000000000000"})
ARM_AUDIENCES = frozenset({"https://management.azure.com", "https://management.core.windows.net"})
ADO_AUDIENCES = frozenset({ADO_RESOURCE_APP_ID})
TOKEN_LIFETIME_S = 3600


def normalise_resource(resource: str) -> str:
    """The audience azure-identity means, whether it sent a scope (`.../.default`) or a resource."""
    value = resource.strip()
    if value.endswith("/.default"):
        value = value[: -len("/.default")]
    return value.rstrip("/").lower()


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def mint(
    resource: str,
    tenant_id: str,
    object_id: str,
    now: float | None = None,
    roles: list[str] | None = None,
    scopes: list[str] | None = None,
) -> tuple[str, int]:
    """A token for `resource` and its expiry (epoch seconds).

    App-only (`scopes` None: a managed identity or service principal): `idtyp: app`, and `roles`
    the application permissions it holds on that resource (Entra leaves the claim out when there
    are none). Delegated (`scopes` given: a person signed in): `idtyp: user`, `scp` the delegated
    permissions, space separated, and no `roles` (access-token-claims-reference: `scp` "only
    included for user tokens"; optional-claims-reference: `idtyp`; docs/simulator.md)."""
    issued = int(now if now is not None else time.time())
    expires = issued + TOKEN_LIFETIME_S
    claims: dict[str, object] = {
        "aud": normalise_resource(resource),
        "iss": f"https://sts.windows.net/{tenant_id}/",
        "tid": tenant_id,
        "oid": object_id,
        "sub": object_id,
        "iat": issued,
        "nbf": issued,
        "exp": expires,
        "idtyp": "app" if scopes is None else "user",
    }
    if scopes is not None:
        claims["scp"] = " ".join(scopes)
    elif roles:
        claims["roles"] = list(roles)
    header = _b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    payload = _b64url(json.dumps(claims).encode())
    return f"{header}.{payload}.", expires


@dataclass(frozen=True)
class TokenProblem:
    code: str
    message: str


def caller_of(authorization: str | None) -> str | None:
    """The object id (`oid`) of the principal a bearer token was minted for; None when unreadable."""
    token = (authorization or "")[len("bearer ") :].strip()
    try:
        oid = json.loads(_b64url_decode(token.split(".")[1])).get("oid")
    except (IndexError, ValueError, AttributeError):
        return None
    return oid if isinstance(oid, str) else None


def roles_of(authorization: str | None) -> frozenset[str]:
    """The `roles` claim (application permissions) of a bearer token; empty when absent or unreadable."""
    token = (authorization or "")[len("bearer ") :].strip()
    try:
        roles = json.loads(_b64url_decode(token.split(".")[1])).get("roles") or []
    except (IndexError, ValueError, AttributeError):
        return frozenset()
    return frozenset(str(r) for r in roles) if isinstance(roles, list) else frozenset()


def _claims(authorization: str | None) -> dict[str, object]:
    token = (authorization or "")[len("bearer ") :].strip()
    try:
        claims = json.loads(_b64url_decode(token.split(".")[1]))
    except (IndexError, ValueError):
        return {}
    return claims if isinstance(claims, dict) else {}


def scopes_of(authorization: str | None) -> frozenset[str] | None:
    """The `scp` claim (delegated permissions) of a person's bearer token; None for an app-only one."""
    claims = _claims(authorization)
    if claims.get("idtyp") != "user":
        return None
    scopes = claims.get("scp")
    return frozenset(scopes.split()) if isinstance(scopes, str) else frozenset()


def check_bearer(authorization: str | None, audiences: frozenset[str]) -> TokenProblem | None:
    """None when the header carries an unexpired simulator token for one of `audiences`."""
    if not authorization or not authorization.lower().startswith("bearer "):
        return TokenProblem(
            "AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing."
        )
    token = authorization[len("bearer ") :].strip()
    try:
        claims = json.loads(_b64url_decode(token.split(".")[1]))
    except (IndexError, ValueError):
        return TokenProblem("InvalidAuthenticationToken", "The access token is invalid.")
    if normalise_resource(str(claims.get("aud", ""))) not in audiences:
        return TokenProblem(
            "InvalidAuthenticationToken", "Access token validation failure. Invalid audience."
        )
    if float(claims.get("exp", 0)) < time.time():
        return TokenProblem("InvalidAuthenticationToken", "Lifetime validation failed, the token is expired.")
    return None
