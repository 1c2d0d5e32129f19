"""The shape of what `azd up` deploys: the conventions of the official azd Functions samples
(Flex Consumption, user-assigned identity, guid()-named role assignments) and the resources
the app expects (its tables and queues), plus the reconciler's exact set of data-plane roles."""

from __future__ import annotations

import re
from typing import Any

import yaml

from tests.infra.bicep import (
    INFRA,
    ROOT,
    Resource,
    all_resources,
    body,
    load_json,
    of_type,
    parse,
    path,
    render,
    resolve,
)

# Built-in role GUIDs.
STORAGE_BLOB_DATA_OWNER = "b7e6dc6d-f1e8-4753-8033-0f276bb0955b"
STORAGE_TABLE_DATA_CONTRIBUTOR = "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3"
SERVICE_BUS_DATA_SENDER = "69a216fc-b8fb-44d8-bc22-1f3c2cd27a39"
SERVICE_BUS_DATA_RECEIVER = "4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0"
SERVICE_BUS_DATA_OWNER = "090c5cfd-751d-490a-894a-3ce6f1109419"
MONITORING_METRICS_PUBLISHER = "3913510d-42f4-4e42-8a64-420c390055eb"
RBAC_ADMINISTRATOR = "f58310d9-a9f6-439a-9e8d-f62e7b41a168"
EVENT_HUBS_DATA_RECEIVER = "a638d3c7-ab3a-418d-83e6-5f17a39d4fde"

MICROSOFT_GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
APPLICATION_READWRITE_OWNEDBY = "18a4783c-866b-4cc7-a460-3d5e5662c884"


def role_assignments() -> list[Resource]:
    return [r for r in all_resources() if r.type == "Microsoft.Authorization/roleAssignments"]


def role_of(assignment: Resource) -> Any:
    return resolve(
        assignment.file,
        path(assignment.body, "properties.roleDefinitionId.function.parameters.resource_name_1"),
    )


def test_the_reconciler_holds_exactly_the_roles_it_needs() -> None:
    held = {
        role_of(a)
        for a in role_assignments()
        if a.body["properties"]["principalId"] == "reconcilerPrincipalId"
    }
    assert held == {
        STORAGE_BLOB_DATA_OWNER,  # host storage and the Flex deployment package
        STORAGE_TABLE_DATA_CONTRIBUTOR,  # desired state, status, requests
        SERVICE_BUS_DATA_SENDER,  # hand-offs, sweep shards, follow-ups to `reconcile`
        SERVICE_BUS_DATA_RECEIVER,  # the two queue triggers
        MONITORING_METRICS_PUBLISHER,  # Entra-authenticated telemetry
        RBAC_ADMINISTRATOR,  # on the target scopes, with the ABAC condition
        EVENT_HUBS_DATA_RECEIVER,  # the Entra audit hub only, when entraAuditEvents is on
    }


def test_role_assignments_follow_the_sample_conventions() -> None:
    for assignment in role_assignments():
        name = assignment.body["name"]
        assert render(name).startswith("guid("), (
            f"{assignment.file}: {assignment.symbol} must be named guid(...)"
        )
        arguments = list(path(name, "function.parameters").values())
        principal = assignment.body["properties"]["principalId"]
        assert principal in arguments or render(principal) in [render(a) for a in arguments], (
            assignment.symbol
        )
        if principal == "reconcilerPrincipalId":
            assert assignment.body["properties"]["principalType"] == "ServicePrincipal", assignment.symbol


def test_data_roles_are_scoped_to_the_apps_own_resources() -> None:
    scopes = {(a.file, a.symbol): a.body.get("scope") for a in role_assignments()}
    assert scopes[("app/storage.bicep", "blobDataOwner")] == "storage"
    assert scopes[("app/storage.bicep", "tableDataContributor")] == "storage"
    assert scopes[("app/servicebus.bicep", "reconcilerSender")] == "reconcileQueue"
    assert scopes[("app/servicebus.bicep", "reconcilerReceiver")] == "namespace"
    assert scopes[("app/servicebus.bicep", "ticketSenderRoles")] == "requestsQueue"
    assert scopes[("app/monitoring.bicep", "metricsPublisher")] == "applicationInsights"


def test_only_the_listed_ticket_senders_may_send_to_the_requests_queue() -> None:
    """Sending rights on the namespace would include `requests`: nobody holds them there, the reconciler
    sends to `reconcile` only, and `requests` has one Data Sender assignment per listed principal."""
    senders = {
        a.symbol: (a.body.get("scope"), a.body["properties"]["principalId"])
        for a in role_assignments()
        if role_of(a) in {SERVICE_BUS_DATA_SENDER, SERVICE_BUS_DATA_OWNER}
    }
    assert set(senders) == {"reconcilerSender", "ticketSenderRoles", "eventsTopicSender"}
    assert senders["reconcilerSender"] == ("reconcileQueue", "reconcilerPrincipalId")
    # Event Grid system topics deliver drift events to `events` only, with their own identity.
    assert senders["eventsTopicSender"] == ("eventsQueue", "senderPrincipalId")
    scope, principal = senders["ticketSenderRoles"]
    assert scope == "requestsQueue"
    assert render(principal) == "sender.principalId"  # one assignment per element of the parameter
    service_bus = body(parse("main.bicep")["modules"]["serviceBus"])
    assert (
        render(service_bus["params"]["ticketSenders"])
        == "concat(operatorSender, ticketSenderServicePrincipals)"
    )
    parameter = parse("main.bicep")["parameters"]["ticketSenderPrincipalIds"]
    assert (parameter["type"], parameter["default"]) == ("string", "")  # nobody unless listed


def test_function_app_runs_on_flex_consumption_with_the_user_assigned_identity() -> None:
    (plan,) = of_type("app/function-app.bicep", "Microsoft.Web/serverfarms")
    assert plan.body["sku"] == {"tier": "FlexConsumption", "name": "FC1"}
    (site,) = of_type("app/function-app.bicep", "Microsoft.Web/sites")
    assert site.body["kind"] == "functionapp,linux"
    assert site.body["identity"]["type"] == "UserAssigned"
    properties = site.body["properties"]
    assert properties["httpsOnly"] is True
    assert path(properties, "siteConfig.minTlsVersion") == "1.2"
    assert path(properties, "siteConfig.ftpsState") == "Disabled"
    assert path(properties, "functionAppConfig.runtime") == {"name": "python", "version": "3.11"}
    deployment = path(properties, "functionAppConfig.deployment.storage")
    assert deployment["type"] == "blobContainer"
    assert deployment["authentication"] == {
        "type": "UserAssignedIdentity",
        "userAssignedIdentityResourceId": "identityId",
    }


def test_storage_holds_the_apps_tables_and_a_private_deployment_container() -> None:
    assert set(resolve("main.bicep", "tableNames")) == {
        "federationconfigs",
        "federationstatus",
        "federationrequests",
        "federationclaims",
        "federationindex",
        "federationhistory",
        "federationpending",
    }
    (container,) = of_type("app/storage.bicep", "Microsoft.Storage/storageAccounts/blobServices/containers")
    assert container.body["properties"]["publicAccess"] == "None"
    storage_module = body(parse("main.bicep")["modules"]["storage"])
    function_module = body(parse("main.bicep")["modules"]["functionApp"])
    assert storage_module["params"]["tableNames"] == "tableNames"
    assert (
        storage_module["params"]["deploymentContainerName"]
        == function_module["params"]["deploymentContainerName"]
    )


def test_service_bus_has_the_two_queues_the_app_uses() -> None:
    (namespace,) = of_type("app/servicebus.bicep", "Microsoft.ServiceBus/namespaces")
    assert namespace.body["sku"]["name"] in {"Standard", "Premium"}  # sessions need Standard or above
    queues = {
        q.body["name"]: q.body["properties"]
        for q in of_type("app/servicebus.bicep", "Microsoft.ServiceBus/namespaces/queues")
    }
    assert set(queues) == {"requests", "reconcile"}
    assert queues["requests"]["requiresSession"] is False  # ticketing systems send plain messages
    assert queues["reconcile"]["requiresSession"] is True  # one writer per owning application
    for name, queue in queues.items():
        assert queue["deadLetteringOnMessageExpiration"] is True, name
        assert isinstance(queue["maxDeliveryCount"], int) and 1 < queue["maxDeliveryCount"] <= 10, name
        assert queue["lockDuration"] == "PT5M", name


def test_drift_events_reach_the_events_queue_filtered_and_with_the_topics_identity() -> None:
    (queue,) = of_type("app/events-queue.bicep", "Microsoft.ServiceBus/namespaces/queues")
    assert queue.body["name"] == "events" and queue.body["properties"]["requiresSession"] is False
    (topic,) = of_type("app/events-topic.bicep", "Microsoft.EventGrid/systemTopics")
    assert topic.body["properties"]["topicType"] == "Microsoft.Resources.Subscriptions"
    assert topic.body["identity"]["type"] == "SystemAssigned"
    (subscription,) = of_type(
        "app/events-topic-subscription.bicep", "Microsoft.EventGrid/systemTopics/eventSubscriptions"
    )
    properties = subscription.body["properties"]
    delivery = properties["deliveryWithResourceIdentity"]
    assert delivery["identity"]["type"] == "SystemAssigned"
    assert delivery["destination"]["endpointType"] == "ServiceBusQueue"
    assert set(properties["filter"]["includedEventTypes"]) == {
        "Microsoft.Resources.ResourceWriteSuccess",
        "Microsoft.Resources.ResourceDeleteSuccess",
    }
    (only_role_assignments,) = properties["filter"]["advancedFilters"]
    assert only_role_assignments["key"] == "data.operationName"
    assert set(only_role_assignments["values"]) == {
        "Microsoft.Authorization/roleAssignments/write",
        "Microsoft.Authorization/roleAssignments/delete",
    }


def test_graph_app_role_module_grants_only_application_readwrite_ownedby() -> None:
    graph = parse("app/graph-app-role.bicep")
    assert "microsoftGraphV1" in graph["extensions"]
    assert set(
        resolve("app/graph-app-role.bicep", n) for n in ("microsoftGraphAppId", "applicationReadWriteOwnedBy")
    ) == {
        MICROSOFT_GRAPH_APP_ID,
        APPLICATION_READWRITE_OWNEDBY,
    }
    (grant,) = [r for r in all_resources() if r.type == "Microsoft.Graph/appRoleAssignedTo"]
    assert resolve(grant.file, grant.body["appRoleId"]) == APPLICATION_READWRITE_OWNEDBY
    assert grant.body["principalId"] == "reconcilerPrincipalId"
    (sp,) = [r for r in all_resources() if r.type == "Microsoft.Graph/servicePrincipals"]
    assert sp.existing and resolve(sp.file, sp.body["appId"]) == MICROSOFT_GRAPH_APP_ID
    module = parse("main.bicep")["modules"]["graphAppRole"]
    assert module["config"]["condition"] == "grantGraphAppRole", "the Graph grant must stay optional"
    assert resolve("main.bicep", "grantGraphAppRole") is False
    bicepconfig = load_json(INFRA / "bicepconfig.json")
    assert bicepconfig["extensions"]["microsoftGraphV1"].startswith(
        "br:mcr.microsoft.com/bicep/extensions/microsoftgraph/v1.0:"
    )


def test_azd_parameters_match_main_bicep() -> None:
    declared = parse("main.bicep")["parameters"]
    given = load_json(INFRA / "main.parameters.json")["parameters"]
    assert set(given) <= set(declared), f"unknown parameters: {sorted(set(given) - set(declared))}"
    without_default = {name for name, p in declared.items() if p.get("default") is None}
    assert without_default <= set(given), f"no value for: {sorted(without_default - set(given))}"
    for name, entry in given.items():
        assert re.fullmatch(r"\$\{[A-Z_]+(=[^}]*)?\}", entry["value"]), (
            f"{name}: expected an azd ${{ENV}} reference"
        )


def test_azure_yaml_deploys_the_repository_root_as_a_python_function() -> None:
    azure = yaml.safe_load((ROOT / "azure.yaml").read_text(encoding="utf-8"))
    assert azure["infra"] == {"provider": "bicep", "path": "infra", "module": "main"}
    (service,) = azure["services"].values()
    assert service == {"project": ".", "language": "python", "host": "function"}
    (site,) = of_type("app/function-app.bicep", "Microsoft.Web/sites")
    assert path(site.body, "tags.function.parameters.arg_2") == {
        "'azd-service-name'": next(iter(azure["services"]))
    }
