"""The App Service / Functions managed-identity endpoint (`IDENTITY_ENDPOINT` + `IDENTITY_HEADER`).

azure-identity's `ManagedIdentityCredential` calls
`GET {IDENTITY_ENDPOINT}?resource=...&api-version=2019-08-01` with the header
`X-IDENTITY-HEADER: {IDENTITY_HEADER}` and reads `access_token`, `expires_on`,
`resource` and `token_type`.
"""

from __future__ import annotations

import re
import secrets

from cloudsim import tokens
from cloudsim.api import Api, Call, Reply, RequestCounters
from cloudsim.state import World

TOKEN_PATH = "/msi/token"


def msi_error(status: int, code: str, message: str) -> Reply:
    return Reply(status, {"error": code, "error_description": message})


class ManagedIdentity:
    def __init__(self, world: World, counters: RequestCounters, identity_header: str | None = None) -> None:
        self.world = world
        self.identity_header = identity_header or secrets.token_urlsafe(24)
        self.api = Api("msi", world, counters, msi_error, audiences=None)
        self.api.routes.add("GET", re.escape(TOKEN_PATH), "token", self.token)

    async def token(self, call: Call, _match: re.Match[str]) -> Reply:
        if call.headers.get("X-IDENTITY-HEADER") != self.identity_header:
            return msi_error(401, "unauthorized", "The X-IDENTITY-HEADER header is missing or wrong.")
        resource = call.query.get("resource")
        if not resource:
            return msi_error(400, "invalid_request", "Required query variable 'resource' is missing.")
        if not call.query.get("api-version"):
            return msi_error(400, "invalid_request", "Required query variable 'api-version' is missing.")
        caller = self.world.caller_object_id
        # App roles are per resource: only Graph tokens carry the Graph application permissions.
        graph = tokens.normalise_resource(resource) in tokens.GRAPH_AUDIENCES
        roles = self.world.graph_app_roles.get(caller, []) if graph else []
        token, expires_on = tokens.mint(resource, self.world.tenant_id, caller, roles=roles)
        return Reply(
            200,
            {
                "access_token": token,
                "expires_on": str(expires_on),
                "resource": resource,
                "token_type": "Bearer",
                "client_id": self.world.caller_object_id,
            },
        )
