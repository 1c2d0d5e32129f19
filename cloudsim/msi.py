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
# A person's token, through the same protocol so that the same credential chain fetches it: the
# CLI run by someone signed in with `az login` (docs/simulator.md, "People"). In Azure a person's
# token comes from Entra through the Azure CLI; the reconciler only reads its claims.
PERSON_TOKEN_PATH = "/msi/people/{object_id}/token"


def msi_error(status: int, code: str, message: str) -> Reply:
    return Reply(status, {"error": code, "error_description": message})


class ManagedIdentity:
    def __init__(self, world: World, counters: RequestCounters, identity_header: str | None = None) -> None:
        self.world = world
        self.identity_header = identity_header or secrets.token_urlsafe(24)
        self.api = Api("msi", world, counters, msi_error, audiences=None)
        self.api.routes.add("GET", re.escape(TOKEN_PATH), "token", self.token)
        person_path = r"/msi/people/(?P<object_id>[^/]+)/token"
        self.api.routes.add("GET", person_path, "personToken", self.person_token)

    def _refused(self, call: Call) -> Reply | None:
        if call.headers.get("X-IDENTITY-HEADER") != self.identity_header:
            return msi_error(401, "unauthorized", "The X-IDENTITY-HEADER header is missing or wrong.")
        if not call.query.get("resource"):
            return msi_error(400, "invalid_request", "Required query variable 'resource' is missing.")
        if not call.query.get("api-version"):
            return msi_error(400, "invalid_request", "Required query variable 'api-version' is missing.")
        return None

    async def token(self, call: Call, _match: re.Match[str]) -> Reply:
        if refused := self._refused(call):
            return refused
        resource = call.query["resource"]
        caller = self.world.caller_object_id
        # App roles are per resource: only Graph tokens carry the Graph application permissions.
        graph = tokens.normalise_resource(resource) in tokens.GRAPH_AUDIENCES
        roles = self.world.graph_app_roles.get(caller, []) if graph else []
        token, expires_on = tokens.mint(resource, self.world.tenant_id, caller, roles=roles)
        return self._issued(resource, token, expires_on)

    async def person_token(self, call: Call, match: re.Match[str]) -> Reply:
        """A delegated token for a person of the world: `scp` their client's Graph permissions for
        Graph, `user_impersonation` for the other APIs (what Azure CLI's tokens for ARM carry)."""
        if refused := self._refused(call):
            return refused
        person = self.world.person(match["object_id"])
        if person is None:
            return msi_error(400, "invalid_request", f"No person {match['object_id']} in this tenant.")
        resource = call.query["resource"]
        graph = tokens.normalise_resource(resource) in tokens.GRAPH_AUDIENCES
        scopes = list(person.graph_scopes) if graph else ["user_impersonation"]
        token, expires_on = tokens.mint(resource, self.world.tenant_id, person.object_id, scopes=scopes)
        return self._issued(resource, token, expires_on)

    def _issued(self, resource: str, token: str, expires_on: int) -> Reply:
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
