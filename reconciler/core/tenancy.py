"""Application tenancy: an application belongs to the ADO project of the first config that claimed it.

A federated credential on an application lets a pipeline sign in as that application, so a
config of one project must not add one to another project's application. The first config
that names an application claims it for its organization/project (the state layer records the
claim, ETag-guarded); a config of another project may use it only where the grant policy's
`sharedApplications` says so. Applications the reconciler creates also carry the claim in a
tag, so the engine can refuse them even without the table.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from reconciler.core.identifiers import OrganizationName, ProjectName
from reconciler.core.model import ApplicationRef, FederationConfig

TENANT_TAG_PREFIX = "wif-reconciler:tenant="


@dataclass(frozen=True, order=True)
class Tenant:
    """An ADO organization and project, case-folded as ADO compares them."""

    organization: str
    project: str

    def __str__(self) -> str:
        return f"{self.organization}/{self.project}"

    @classmethod
    def of(cls, config: FederationConfig) -> Tenant:
        organization, project, _ = config.connection.folded
        return cls(organization, project)

    @classmethod
    def parse(cls, text: str) -> Tenant | None:
        """`organization/project` as __str__ writes it, or None for anything else."""
        organization, slash, project = text.partition("/")
        if not slash or not OrganizationName.is_valid(organization):
            return None
        if project != "*" and not ProjectName.is_valid(project):  # `*`: every project (sharing rules)
            return None
        return cls(organization.lower(), project.lower())


def claim_key(ref: ApplicationRef) -> str:
    """Who is claimed: `app:<client id>`, or `new:<display name>` (case-folded) for an app to create."""
    if ref.app_id:
        return f"app:{ref.app_id.lower()}"
    return f"new:{str(ref.display_name).casefold()}"


def app_key(app_id: str) -> str:
    """The claim key of an existing application, by its client id."""
    return f"app:{app_id.lower()}"


def tenant_tag(tenant: Tenant) -> str:
    return f"{TENANT_TAG_PREFIX}{tenant}"


def tenant_of_tags(tags: Iterable[str]) -> Tenant | None:
    """The tenant an application's tag names (tags the reconciler wrote when it created the app)."""
    named = [Tenant.parse(tag[len(TENANT_TAG_PREFIX) :]) for tag in tags if tag.startswith(TENANT_TAG_PREFIX)]
    return named[0] if len(named) == 1 else None


def first_claims(
    configs: Iterable[FederationConfig], claims: Mapping[str, Tenant]
) -> dict[str, tuple[Tenant, str]]:
    """The stored claims, then the first config of the batch for each application still unclaimed.

    Returns claim key -> (tenant, who claimed it: "the table" or a config id).
    """
    owners: dict[str, tuple[Tenant, str]] = {key: (tenant, "the table") for key, tenant in claims.items()}
    for config in configs:
        owners.setdefault(claim_key(config.application), (Tenant.of(config), config.id))
    return owners
