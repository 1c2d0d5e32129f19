"""docs/deploy.md keeps up with infra/: every azd variable and every role the reconciler holds
is explained there."""

from __future__ import annotations

import re

from tests.infra.bicep import INFRA, ROOT, load_json

DOC = ROOT / "docs" / "deploy.md"


def azd_variable(value: str) -> str:
    """AZURE_ENV_NAME for "${AZURE_ENV_NAME}", WIF_X for "${WIF_X=default}"."""
    match = re.match(r"\$\{([A-Z_]+)", value)
    assert match, f"not an azd ${{VARIABLE}} reference: {value}"
    return match.group(1)


def test_every_azd_variable_is_documented() -> None:
    text = DOC.read_text(encoding="utf-8")
    parameters = load_json(INFRA / "main.parameters.json")["parameters"]
    variables = {azd_variable(p["value"]) for p in parameters.values()}
    undocumented = sorted(v for v in variables if f"`{v}`" not in text)
    assert not undocumented, f"explain these azd variables in docs/deploy.md: {undocumented}"


def test_every_role_of_the_reconciler_is_explained() -> None:
    text = DOC.read_text(encoding="utf-8")
    for role in (
        "Storage Blob Data Owner",
        "Storage Table Data Contributor",
        "Azure Service Bus Data Receiver",
        "Azure Service Bus Data Sender",
        "Azure Service Bus Data Owner",
        "Monitoring Metrics Publisher",
        "WIF Reconciler role assignments",
        "Application.ReadWrite.OwnedBy",
        "Endpoint Administrator",
    ):
        assert role in text, role


def test_the_first_deployment_checklist_names_every_right_the_deployer_needs() -> None:
    """Each nested deployment into a target scope needs Microsoft.Resources/deployments/* there
    ("you need write access on the resources you're deploying and access to all operations on the
    Microsoft.Resources/deployments resource type",
    https://learn.microsoft.com/azure/azure-resource-manager/templates/deploy-rest#required-permissions);
    what it creates there needs roleDefinitions/write and roleAssignments/write."""
    text = DOC.read_text(encoding="utf-8")
    checklist = " ".join(text.split("## First deployment", 1)[1].split("\n## ", 1)[0].split())
    for right in (
        "Microsoft.Resources/deployments/*",
        "Microsoft.Authorization/roleDefinitions/write",
        "Microsoft.Authorization/roleAssignments/write",
        "Privileged Role Administrator",
        "Project Collection Administrator",
        "Endpoint Administrator",
        "v0.36.1",
    ):
        assert right in checklist, right


# The Bicep CLI each Microsoft Graph Bicep types release needs: v1.0:1.0.0 (GA, July 2025) needs
# Bicep v0.36.1 ("Microsoft Graph Bicep templates: what's new",
# https://learn.microsoft.com/graph/templates/bicep/whats-new).
MINIMUM_BICEP_FOR_GRAPH_TYPES = {"1.0.0": "v0.36.1"}


def test_the_docs_state_the_bicep_version_the_pinned_graph_extension_needs() -> None:
    reference = load_json(INFRA / "bicepconfig.json")["extensions"]["microsoftGraphV1"]
    version = reference.rsplit(":", 1)[1]
    assert version in MINIMUM_BICEP_FOR_GRAPH_TYPES, f"look up the Bicep version Graph types {version} need"
    text = " ".join(DOC.read_text(encoding="utf-8").split())
    assert f"must be **{MINIMUM_BICEP_FOR_GRAPH_TYPES[version]} or later**" in text
