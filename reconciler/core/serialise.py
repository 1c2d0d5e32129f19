"""A FederationConfig back to a document in the YAML format, for storing and exporting.

The document is canonical (the same config always gives the same document, field order
included), so comparing documents tells whether a config changed, and parsing the
document with `parse_config` gives the config back.
"""

from __future__ import annotations

from typing import Any

from reconciler.core.model import FederationConfig, credential_name_for
from reconciler.core.validation import API_VERSION, CONFIG_KIND


def config_to_document(config: FederationConfig) -> dict[str, Any]:
    connection: dict[str, Any] = {
        "name": config.connection_name,
        "subscriptionId": config.subscription_id,
        "subscriptionName": config.subscription_name,
        "pipelines": "all" if config.pipelines.all_pipelines else sorted(config.pipelines.pipeline_ids),
    }
    # A derived credential name is left out, as the author left it out.
    if config.credential_name != credential_name_for(config.id):
        connection["credentialName"] = config.credential_name
    application: dict[str, Any] = (
        {"displayName": config.application.display_name, "create": True}
        if config.application.create
        else {"appId": config.application.app_id}
    )
    return {
        "apiVersion": API_VERSION,
        "kind": CONFIG_KIND,
        # Always explicit: the id keys the stored row, whatever the organization or names become.
        "id": config.id,
        "organization": config.organization,
        "project": config.project,
        "tenantId": config.tenant_id,
        "serviceConnection": connection,
        "application": application,
        "roleAssignments": [
            {"role": grant.role_name or grant.role_id, "scope": grant.written_scope}
            for grant in config.role_grants
        ],
        "prune": config.prune.value,
    }
