"""No key, SAS or connection string with a secret anywhere in infra/ or azure.yaml.

A text scan catches the ways a Bicep file can fetch or build a secret (list* functions,
`AccountKey=`, `SharedAccessKey`, secure parameters); the parsed files show that every data
plane the app uses has local (key) auth switched off, so no key could work even if one leaked.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.infra.bicep import INFRA, ROOT, of_type, path

FORBIDDEN = {
    r"\blist\w*\(": "a list*() function (listKeys, listConnectionStrings, ...) returns secrets",
    r"AccountKey\s*=": "a storage connection string with an account key",
    r"SharedAccess(Key|Signature)": "a Service Bus or storage SAS",
    r"InstrumentationKey\s*=": "an Application Insights connection string built by hand",
    r"@secure\(\)": "a secure parameter means a secret is passed in",
    r"\b(primary|secondary)(Key|ConnectionString)\b": "a key property read from a resource",
    r"UseDevelopmentStorage|UseDevelopmentEmulator": "a local emulator connection string",
}


def infra_texts() -> list[Path]:
    files = [file for file in INFRA.rglob("*") if file.is_file()]
    return [*sorted(files), ROOT / "azure.yaml"]


@pytest.mark.parametrize("pattern", sorted(FORBIDDEN))
def test_no_secret_is_fetched_or_built(pattern: str) -> None:
    hits = [
        f"{file.relative_to(ROOT)}:{number}: {line.strip()}"
        for file in infra_texts()
        for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1)
        if re.search(pattern, line, flags=re.IGNORECASE)
    ]
    assert not hits, f"{FORBIDDEN[pattern]}:\n" + "\n".join(hits)


def test_the_only_connection_string_is_application_insights() -> None:
    """Its connection string locates the component and holds no secret once local auth is off."""
    hits = [
        f"{file.relative_to(ROOT)}:{number}: {line.strip()}"
        for file in INFRA.rglob("*.bicep")
        for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1)
        if re.search(r"connection_?string", line, flags=re.IGNORECASE)
        and not re.search(r"application_?insights", line, flags=re.IGNORECASE)
        and not line.strip().startswith("//")
    ]
    assert not hits, "connection strings other than Application Insights':\n" + "\n".join(hits)


def test_storage_accepts_no_shared_key() -> None:
    (account,) = of_type("app/storage.bicep", "Microsoft.Storage/storageAccounts")
    properties = account.body["properties"]
    assert properties["allowSharedKeyAccess"] is False
    assert properties["allowBlobPublicAccess"] is False
    assert properties["minimumTlsVersion"] == "TLS1_2"
    assert properties["supportsHttpsTrafficOnly"] is True
    assert properties["isLocalUserEnabled"] is False


def test_service_bus_accepts_no_sas() -> None:
    (namespace,) = of_type("app/servicebus.bicep", "Microsoft.ServiceBus/namespaces")
    assert path(namespace.body, "properties.disableLocalAuth") is True
    assert path(namespace.body, "properties.minimumTlsVersion") == "1.2"
    assert of_type("app/servicebus.bicep", "Microsoft.ServiceBus/namespaces/AuthorizationRules") == []
    assert of_type("app/servicebus.bicep", "Microsoft.ServiceBus/namespaces/queues/authorizationRules") == []


def test_monitoring_accepts_only_entra_authenticated_telemetry() -> None:
    (component,) = of_type("app/monitoring.bicep", "Microsoft.Insights/components")
    assert path(component.body, "properties.DisableLocalAuth") is True
    (workspace,) = of_type("app/monitoring.bicep", "Microsoft.OperationalInsights/workspaces")
    assert path(workspace.body, "properties.features.disableLocalAuth") is True
