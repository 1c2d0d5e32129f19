"""A generated tenant for benchmarks and demos: the simulator state plus matching desired configs.

The state holds what exists before the reconciler's first pass (apps, service
principals, organizations, projects, role definitions, unmanaged apps with foreign
FICs); the configs describe what the reconciler should create (connections, FICs,
role assignments, pipeline permissions).
"""

from __future__ import annotations

import random
import time
import uuid
from dataclasses import dataclass

import yaml

from cloudsim.rights import grant_reconciler_rights
from cloudsim.state import (
    Application,
    FederatedCredential,
    JsonObject,
    Organization,
    Project,
    ServicePrincipal,
    World,
)

ORGANIZATIONS = ("contoso", "fabrikam")
PROJECTS = (
    "payments", "identity", "billing", "search", "checkout",
    "catalog", "shipping", "analytics", "platform", "mobile",
)  # fmt: skip
SUBSCRIPTION_NAMES = ("Payments Prod", "Payments Dev", "Shared Services", "Data Platform", "Sandbox")
ROLES = ("Key Vault Reader", "Key Vault Secrets User", "Storage Blob Data Reader", "AcrPull", "Reader")
MAX_CONFIGS_PER_APP = 3
GITHUB_ISSUER = "https://token.actions.githubusercontent.com"


@dataclass
class GeneratedTenant:
    world: World
    configs: list[JsonObject]

    def configs_yaml(self) -> str:
        return yaml.safe_dump_all(self.configs, sort_keys=False)


class _Ids:
    """Deterministic GUIDs from a seed, so a generated tenant is the same on every run."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def __call__(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))


def _scope(rng: random.Random, subscription: str, project: str, role: str) -> str:
    group = f"/subscriptions/{subscription}/resourceGroups/rg-{project}"
    if role.startswith("Key Vault"):
        return f"{group}/providers/Microsoft.KeyVault/vaults/kv-{project}-{rng.randrange(100):02}"
    if role.startswith("Storage"):
        return f"{group}/providers/Microsoft.Storage/storageAccounts/st{project}{rng.randrange(100):02}"
    if role == "AcrPull":
        return f"{group}/providers/Microsoft.ContainerRegistry/registries/acr{project}"
    return group


def _application(new_id: _Ids, name: str, created: float) -> Application:
    return Application(id=new_id(), app_id=new_id(), display_name=name, created_at=created)


def generate_tenant(configs: int, unmanaged_apps: int, seed: int = 1) -> GeneratedTenant:
    rng = random.Random(seed)
    new_id = _Ids(rng)
    created = time.time() - 7 * 24 * 3600  # long replicated, so ARM knows every principal
    world = World.from_json({"tenant_id": new_id(), "caller_object_id": new_id()})
    subscriptions = {new_id(): name for name in SUBSCRIPTION_NAMES}
    world.settings.subscriptions = subscriptions
    world.organizations = [
        Organization(name=org, id=new_id(), projects=[Project(id=new_id(), name=p) for p in PROJECTS])
        for org in ORGANIZATIONS
    ]
    grant_reconciler_rights(world)  # what a deployment grants the reconciler's identity
    documents: list[JsonObject] = []
    app: Application | None = None
    uses = 0
    for n in range(configs):
        org = world.organizations[n % len(world.organizations)]
        project = org.projects[(n // len(world.organizations)) % len(org.projects)]
        # Now and then a few configs of one project share one app (one identity, several connections).
        if app is None or uses >= MAX_CONFIGS_PER_APP or rng.random() > 0.25:
            # Configs adopt these apps, so the reconciler's identity owns them and their owners
            # tagged them for the project that uses them (docs/deploy.md).
            app = Application(
                id=new_id(),
                app_id=new_id(),
                display_name=f"wif-app-{n:05}",
                created_at=created,
                owners=[world.caller_object_id],
                tags=[f"wif-reconciler:tenant={org.name}/{project.name}"],
            )
            world.applications.append(app)
            world.service_principals.append(
                ServicePrincipal(
                    id=new_id(), app_id=app.app_id, display_name=app.display_name, created_at=created
                )
            )
            uses = 0
            app_org, app_project = org, project
        uses += 1
        org, project = app_org, app_project  # a shared app's configs are all of its project
        subscription = list(subscriptions)[n % len(subscriptions)]
        roles = rng.sample(ROLES, rng.randint(1, 2))
        documents.append(
            {
                "apiVersion": "wif-reconciler/v1",
                "kind": "FederationConfig",
                "organization": org.name,
                "project": project.name,
                "tenantId": world.tenant_id,
                "serviceConnection": {
                    "name": f"sc-{n:05}",
                    "subscriptionId": subscription,
                    "subscriptionName": subscriptions[subscription],
                    "pipelines": "all",
                },
                "application": {"appId": app.app_id},
                "roleAssignments": [
                    {"role": role, "scope": _scope(rng, subscription, project.name, role)} for role in roles
                ],
                "prune": "managed",
            }
        )
    for m in range(unmanaged_apps):
        foreign = Application(
            id=new_id(), app_id=new_id(), display_name=f"unmanaged-{m:05}", created_at=created
        )
        foreign.federated_credentials = [
            FederatedCredential(
                id=new_id(),
                name=f"github-{k}",
                issuer=GITHUB_ISSUER,
                subject=f"repo:contoso/service-{m}:ref:refs/heads/branch-{k}",
                audiences=["api://AzureADTokenExchange"],
                created_at=created,
            )
            for k in range(rng.randint(1, 3))
        ]
        world.applications.append(foreign)
    return GeneratedTenant(world, documents)
