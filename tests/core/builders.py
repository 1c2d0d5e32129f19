"""Plain-value builders for the core's tests."""

from __future__ import annotations

import uuid
from dataclasses import replace

from reconciler.core.identifiers import ScopePattern
from reconciler.core.model import (
    WORKLOAD_IDENTITY_SCHEME,
    Application,
    ApplicationRef,
    FederatedCredential,
    FederationConfig,
    PipelineAccess,
    PruneMode,
    RoleAssignment,
    RoleGrant,
    ServiceConnection,
    credential_name_for,
    marker_for,
)
from reconciler.core.policy import GrantPolicy
from reconciler.core.roles import builtin_role
from reconciler.core.tenancy import TENANT_TAG_PREFIX
from reconciler.core.validation import derive_config_id

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
SUBSCRIPTION = "11111111-2222-3333-4444-555555555555"
APP_ID = "aaaaaaaa-0000-0000-0000-000000000001"
OBJECT_ID = "bbbbbbbb-0000-0000-0000-000000000001"
SP_ID = "cccccccc-0000-0000-0000-000000000001"
VAULT = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-pay/providers/microsoft.keyvault/vaults/kv-pay"
KEY_VAULT_READER = "21090545-7ca7-4776-b22c-e363652d74d2"
READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"
OWNER = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"
# What observation reads for organizations whose connections are converted or moved.
ORGANIZATION_IDS = {
    "contoso": "0c0c0c0c-0000-0000-0000-000000000001",
    "fabrikam": "0f0f0f0f-0000-0000-0000-000000000002",
}


def role(name: str) -> str:
    found = builtin_role(name)
    assert found is not None
    return found.id


def policy(*roles: str, privileged: tuple[str, ...] = ()) -> GrantPolicy:
    return GrantPolicy(
        organizations=frozenset({"contoso", "fabrikam"}),
        role_ids=frozenset(role(r) for r in roles or ("Key Vault Reader", "Reader")),
        privileged_role_ids=frozenset(role(r) for r in privileged),
        scopes=(ScopePattern("/subscriptions/*/resourceGroups/*"),),
    )


def config(
    name: str = "kv-reader",
    *,
    organization: str = "contoso",
    project: str = "payments",
    app_id: str | None = APP_ID,
    create_as: str | None = None,
    grants: tuple[tuple[str, str], ...] = ((KEY_VAULT_READER, VAULT),),
    pipelines: PipelineAccess = PipelineAccess(all_pipelines=True),  # noqa: B008 - frozen value
    prune: PruneMode = PruneMode.MANAGED,
) -> FederationConfig:
    config_id = derive_config_id(organization, project, name)
    application = (
        ApplicationRef(display_name=create_as, create=True) if create_as else ApplicationRef(app_id=app_id)
    )
    return FederationConfig(
        id=config_id,
        organization=organization,
        project=project,
        tenant_id=TENANT,
        connection_name=name,
        subscription_id=SUBSCRIPTION,
        subscription_name="Payments Prod",
        pipelines=pipelines,
        application=application,
        role_grants=tuple(RoleGrant(role_id=r, scope=s) for r, s in grants),
        credential_name=credential_name_for(config_id),
        prune=prune,
    )


def app(
    *credentials: FederatedCredential,
    app_id: str = APP_ID,
    sp: str | None = SP_ID,
    name: str = "sc-payments",
    tags: frozenset[str] = frozenset({f"{TENANT_TAG_PREFIX}contoso/payments"}),  # its owners allow config()'s
) -> Application:
    return Application(
        object_id=OBJECT_ID if app_id == APP_ID else f"obj-{app_id}",
        app_id=app_id,
        display_name=name,
        credentials=credentials,
        service_principal_id=sp,
        tags=tags,
    )


def connection(
    for_config: FederationConfig,
    *,
    connection_id: str = "ce000000-0000-0000-0000-000000000001",
    **changes: object,
) -> ServiceConnection:
    """The connection exactly as the config wants it, then `changes`."""
    ready = ServiceConnection(
        id=connection_id,
        organization=for_config.organization,
        project=for_config.project,
        name=for_config.connection_name,
        scheme=WORKLOAD_IDENTITY_SCHEME,
        app_id=for_config.application.app_id,
        tenant_id=for_config.tenant_id,
        subscription_id=for_config.subscription_id,
        subscription_name=for_config.subscription_name,
        issuer=f"https://login.microsoftonline.com/{TENANT}/v2.0",
        subject=f"/eid1/c/pub/t/x/a/y/sc/org/{connection_id}",
        pipelines=PipelineAccess(all_pipelines=True),
    )
    return replace(ready, **changes)  # type: ignore[arg-type]


def credential_for(
    for_config: FederationConfig, conn: ServiceConnection, *, marked: bool = True, name: str | None = None
) -> FederatedCredential:
    return FederatedCredential(
        id=f"fic-{for_config.id}",
        name=name or for_config.credential_name,
        issuer=str(conn.issuer),
        subject=str(conn.subject),
        description=marker_for(for_config.id) if marked else "",
    )


def assignment(
    scope: str = VAULT, role_id: str = KEY_VAULT_READER, *, owner: str | None = None, principal: str = SP_ID
) -> RoleAssignment:
    name = str(uuid.uuid5(uuid.NAMESPACE_OID, f"{scope}|{role_id}|{principal}"))
    return RoleAssignment(
        id=f"{scope}/providers/Microsoft.Authorization/roleAssignments/{name}",
        name=name,
        scope=scope,
        role_id=role_id,
        principal_id=principal,
        description=marker_for(owner) if owner else "",
    )
