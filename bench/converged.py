"""A generated tenant as the reconciler leaves it once converged, built directly (for the big benchmarks).

Converging 50,000 configs through the APIs takes many minutes and is not what those benchmarks
measure; this writes into the simulator's state what the reconciler would have written for each
config: its service connection (Manual, workload identity, on Entra's issuer, with the config's
marker), the federated credential for that connection on the config's application, and its role
assignments (named as the engine names them). The benchmarks then check that a pass plans nothing,
so a mismatch here shows as drift, never as a flattering figure.
"""

from __future__ import annotations

from collections.abc import Iterable

from cloudsim.ado import WIF, federation_claims
from cloudsim.generate import GeneratedTenant
from cloudsim.state import (
    FederatedCredential,
    Organization,
    ProjectReference,
    RoleAssignment,
    ServiceEndpoint,
    World,
    new_id,
)
from reconciler.core.model import TOKEN_EXCHANGE_AUDIENCE, FederationConfig, role_assignment_name
from reconciler.core.validation import Document, parse_config


def parsed_configs(tenant: GeneratedTenant) -> list[FederationConfig]:
    """The generated documents, validated as the reconciler validates a file's."""
    configs: list[FederationConfig] = []
    for number, body in enumerate(tenant.configs, start=1):
        config, problems = parse_config(Document("generated", number, body))
        if config is None:
            raise ValueError(f"generated config {number} is invalid: {problems}")
        configs.append(config)
    return configs


def converge(world: World, configs: Iterable[FederationConfig]) -> None:
    """Add to `world` what the reconciler creates for each config (the generated apps exist)."""
    apps = {app.app_id: app for app in world.applications}
    principals = {sp.app_id: sp.id for sp in world.service_principals}
    organizations = {org.name: org for org in world.organizations}
    for config in configs:
        app_id = str(config.application.app_id)
        org = organizations[config.organization]
        endpoint = _connection(org, config, app_id)
        org.endpoints.append(endpoint)
        claims = federation_claims(org, endpoint)
        apps[app_id].federated_credentials.append(
            FederatedCredential(
                id=new_id(),
                name=config.credential_name,
                issuer=claims["workloadIdentityFederationIssuer"],
                subject=claims["workloadIdentityFederationSubject"],
                audiences=[TOKEN_EXCHANGE_AUDIENCE],
                description=config.marker,
                created_at=endpoint.created_at,
            )
        )
        principal = principals[app_id]
        world.role_assignments.extend(
            RoleAssignment(
                name=role_assignment_name(grant.scope, grant.role_id, principal),
                scope=grant.scope,
                role_definition_guid=grant.role_id,
                principal_id=principal,
                principal_type="ServicePrincipal",
                description=config.marker,
                created_at=endpoint.created_at,
                updated_at=endpoint.created_at,
            )
            for grant in config.role_grants
        )


def _connection(org: Organization, config: FederationConfig, app_id: str) -> ServiceEndpoint:
    project = org.project(config.project)
    assert project is not None, config.project
    return ServiceEndpoint(
        id=new_id(),
        name=config.connection_name,
        type="AzureRM",
        url="https://management.azure.com/",
        scheme=WIF,
        parameters={"tenantid": config.tenant_id, "serviceprincipalid": app_id},
        data={
            "subscriptionId": config.subscription_id,
            "subscriptionName": config.subscription_name,
            "environment": "AzureCloud",
            "scopeLevel": "Subscription",
            "creationMode": "Manual",
        },
        project_refs=[ProjectReference(project_id=project.id, name=config.connection_name)],
        description=config.marker,
        created_at=0.0,  # long ago: visible to every listing
    )
