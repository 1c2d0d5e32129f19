"""The issuer and subject a service connection will have once it is on Entra's issuer.

ADO converts a manually created connection from a secret to workload identity federation,
and moves one off its own (retiring) issuer, only once the application already trusts the
issuer and subject the connection will use (shared/design/azure-contracts.md, "Stricter
rules"). So the credential is created from these computed values first, and the values ADO
returns after the conversion are checked against them.

Formats (azure-contracts.md): issuer `https://login.microsoftonline.com/{tenant}/v2.0`,
subject `/eid1/c/pub/t/{tenant}/a/{Azure DevOps app id}/sc/{organization id}/{connection id}`
with both GUIDs as .NET writes their bytes (little-endian), base64url without padding. The
subject format is derived from real subjects, not documented: the engine checks it against
what ADO returns and follows ADO when they differ.
"""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass

# Azure DevOps' own Entra application: part of every Entra-issuer subject of a connection.
AZURE_DEVOPS_APP_ID = "499b84ac-1321-427f-aa17-267ca6975798"


@dataclass(frozen=True)
class Trust:
    """An issuer and subject pair: what a federated credential trusts."""

    issuer: str
    subject: str

    def __str__(self) -> str:
        return f"issuer {self.issuer!r} and subject {self.subject!r}"


def entra_trust(tenant_id: str, organization_id: str, connection_id: str) -> Trust:
    """What a connection of this organization and tenant presents on Entra's issuer."""
    tenant = _b64url_guid(tenant_id)
    devops = _b64url_guid(AZURE_DEVOPS_APP_ID)
    return Trust(
        issuer=f"https://login.microsoftonline.com/{tenant_id.lower()}/v2.0",
        subject=f"/eid1/c/pub/t/{tenant}/a/{devops}/sc/{organization_id.lower()}/{connection_id.lower()}",
    )


def _b64url_guid(guid: str) -> str:
    return base64.urlsafe_b64encode(uuid.UUID(guid).bytes_le).rstrip(b"=").decode("ascii")
