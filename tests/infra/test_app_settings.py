"""The Function App in infra/ sets every app setting the app reads, under the same names.

The contract is local.settings.sample.json. A few of its settings are local-only (connection
strings for the emulators, FUNCTIONS_WORKER_RUNTIME); infra/local-only-settings.json lists
them, each with the identity-based settings that replace it in Azure. That file is the one
place the list lives.
"""

from __future__ import annotations

from typing import Any

from reconciler.cloud import CLOUDS
from tests.infra.bicep import INFRA, ROOT, app_settings, body, load_json, parse, render, resolve

FUNCTION_APP = "app/function-app.bicep"


def sample_settings() -> dict[str, str]:
    values: dict[str, str] = load_json(ROOT / "local.settings.sample.json")["Values"]
    return values


def local_only() -> dict[str, list[str]]:
    replacements: dict[str, list[str]] = load_json(INFRA / "local-only-settings.json")["localOnly"]
    return replacements


def settings_required_in_azure() -> set[str]:
    replaced = local_only()
    required = set(sample_settings()) - set(replaced)
    for replacements in replaced.values():
        required.update(replacements)
    return required


def function_app_param(name: str) -> Any:
    """The expression main.bicep passes to the function-app module for `name`."""
    module = body(parse("main.bicep")["modules"]["functionApp"])
    return module["params"][name]


def test_every_local_only_setting_is_one_the_sample_has() -> None:
    unknown = set(local_only()) - set(sample_settings())
    assert not unknown, f"infra/local-only-settings.json names settings the sample lacks: {sorted(unknown)}"


def test_every_setting_the_app_reads_is_set_on_the_function_app() -> None:
    missing = settings_required_in_azure() - set(app_settings())
    assert not missing, f"set these in infra/{FUNCTION_APP} (siteConfig.appSettings): {sorted(missing)}"


def test_no_local_only_setting_is_set_in_azure() -> None:
    leaked = set(local_only()) & set(app_settings())
    assert not leaked, (
        f"local-only settings (connection strings, worker runtime) set in Azure: {sorted(leaked)}"
    )


def test_every_setting_in_azure_is_one_the_app_reads() -> None:
    unexplained = set(app_settings()) - settings_required_in_azure()
    assert not unexplained, (
        f"settings the app does not read: {sorted(unexplained)}; add them to local.settings.sample.json "
        "or to a replacement list in infra/local-only-settings.json"
    )


def test_identity_based_connections_use_the_user_assigned_identity() -> None:
    settings = app_settings()
    for prefix in ("AzureWebJobsStorage", "ServiceBusConnection"):
        assert settings[f"{prefix}__credential"] == "managedidentity"
        assert settings[f"{prefix}__clientId"] == "identityClientId"
    assert settings["AZURE_CLIENT_ID"] == "identityClientId"
    assert render(function_app_param("identityClientId")) == "identity.outputs.clientId"
    assert render(function_app_param("identityId")) == "identity.outputs.id"


def test_connections_point_at_the_apps_own_resources() -> None:
    settings = app_settings()
    assert settings["AzureWebJobsStorage__accountName"] == "storageAccountName"
    assert render(function_app_param("storageAccountName")) == "storage.outputs.name"
    assert settings["WIF_TABLE_ENDPOINT"] == "tableEndpoint"
    assert render(function_app_param("tableEndpoint")) == "storage.outputs.tableEndpoint"
    storage_outputs = parse("app/storage.bicep")["outputs"]
    assert render(storage_outputs["tableEndpoint"]["value"]) == "storage.properties.primaryEndpoints.table"
    assert settings["ServiceBusConnection__fullyQualifiedNamespace"] == "serviceBusFullyQualifiedNamespace"
    assert render(function_app_param("serviceBusFullyQualifiedNamespace")) == (
        "serviceBus.outputs.fullyQualifiedNamespace"
    )


def test_application_insights_telemetry_is_sent_with_entra_auth() -> None:
    settings = app_settings()
    assert (
        settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"]
        == "Authorization=AAD;ClientId=${identityClientId}"
    )
    assert render(function_app_param("applicationInsightsConnectionString")) == (
        "monitoring.outputs.connectionString"
    )


def test_fixed_values_match_the_sample() -> None:
    sample = sample_settings()
    settings = app_settings()
    assert settings["WIF_POLICY_FILE"] == sample["WIF_POLICY_FILE"]
    # The cloud deployed to: environment().name is "AzureCloud" in the public cloud ("Bicep
    # functions - deployment", environment: https://learn.microsoft.com/azure/azure-resource-manager/bicep/bicep-functions-deployment#environment),
    # the value the sample sets, and the ARM metadata name of each cloud reconciler/cloud.py knows.
    assert render(resolve(FUNCTION_APP, settings["WIF_CLOUD"])) == "environment().name"
    assert sample["WIF_CLOUD"] == "AzureCloud"
    assert {"AzureCloud", "AzureUSGovernment", "AzureChinaCloud"} <= set(CLOUDS)
    assert settings["DRIFT_SCHEDULE"] == "driftSchedule"
    assert render(function_app_param("driftSchedule")) == "driftSchedule"
    assert resolve("main.bicep", "driftSchedule") == sample["DRIFT_SCHEDULE"]
    azd_default = load_json(INFRA / "main.parameters.json")["parameters"]["driftSchedule"]["value"]
    assert azd_default == "${WIF_DRIFT_SCHEDULE=" + sample["DRIFT_SCHEDULE"] + "}"


def test_the_worker_runtime_is_set_by_flex_consumption_instead() -> None:
    site = body(parse(FUNCTION_APP)["resources"]["functionApp"])
    runtime = site["properties"]["functionAppConfig"]["runtime"]
    assert runtime == {"name": sample_settings()["FUNCTIONS_WORKER_RUNTIME"], "version": "3.11"}
