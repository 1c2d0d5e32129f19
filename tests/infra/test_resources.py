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


CUSTOM_ROLE = "custom: roleAssignmentManager"


def role_of(assignment: Resource) -> Any:
    """The built-in role GUID an assignment grants, or CUSTOM_ROLE for the reconciler's custom role."""
    role = resolve(
        assignment.file,
        path(assignment.body, "properties.roleDefinitionId.function.parameters.resource_name_1"),
    )
    return CUSTOM_ROLE if render(role) == "roleAssignmentManager.name" else role


def test_the_reconciler_holds_exactly_the_roles_it_needs() -> None:
    held = {
        role_of(a)
        for a in role_assignments()
        if a.body["properties"]["principalId"] == "reconcilerPrincipalId"
    }
    assert held == {
        STORAGE_BLOB_DATA_OWNER,  # host storage and the Flex deployment package
        STORAGE_TABLE_DATA_CONTRIBUTOR,  # desired state, status, requests, host diagnostics
        SERVICE_BUS_DATA_OWNER,  # `reconcile` only: send, receive, queue length for scaling
        SERVICE_BUS_DATA_RECEIVER,  # the `requests` trigger
        MONITORING_METRICS_PUBLISHER,  # Entra-authenticated telemetry
        CUSTOM_ROLE,  # role assignments on the target scopes, with the ABAC condition
        EVENT_HUBS_DATA_RECEIVER,  # the Entra audit hub only, when entraAuditEvents is on
    }
    assert RBAC_ADMINISTRATOR not in held  # the built-in role also brings */read and Microsoft.Support/*


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
    assert scopes[("app/servicebus.bicep", "reconcilerQueueOwner")] == "reconcileQueue"
    assert scopes[("app/servicebus.bicep", "reconcilerReceiver")] == "namespace"
    assert scopes[("app/servicebus.bicep", "ticketSenderRoles")] == "requestsQueue"
    assert scopes[("app/servicebus.bicep", "operatorSender")] == "requestsQueue"
    assert scopes[("app/monitoring.bicep", "metricsPublisher")] == "applicationInsights"


def test_the_reconciler_cannot_send_to_the_requests_queue() -> None:
    """A ticket on `requests` is an order to grant access: only the listed ticketing systems and the
    operator may put one there. Sending is granted by Data Sender and Data Owner (whose Manage also
    covers the queue's runtime properties); the reconciler holds one of them on `reconcile` only, and
    nobody holds one on the namespace, which would include `requests`."""
    senders = {
        a.symbol: (a.body.get("scope"), a.body["properties"]["principalId"])
        for a in role_assignments()
        if role_of(a) in {SERVICE_BUS_DATA_SENDER, SERVICE_BUS_DATA_OWNER}
    }
    assert set(senders) == {
        "reconcilerQueueOwner", "ticketSenderRoles", "operatorSender", "eventsTopicSender"
    }  # fmt: skip
    assert senders["reconcilerQueueOwner"] == ("reconcileQueue", "reconcilerPrincipalId")
    # Event Grid system topics deliver drift events to `events` only, with their own identity.
    assert senders["eventsTopicSender"] == ("eventsQueue", "senderPrincipalId")
    assert all(
        principal != "reconcilerPrincipalId"
        for scope, principal in senders.values()
        if scope != "reconcileQueue"
    )
    assert {scope for scope, _ in senders.values()} == {"reconcileQueue", "requestsQueue", "eventsQueue"}


def test_only_the_listed_ticket_senders_may_send_to_the_requests_queue() -> None:
    assignments = {a.symbol: a for a in role_assignments() if a.file == "app/servicebus.bicep"}
    tickets = assignments["ticketSenderRoles"].body["properties"]
    assert tickets["principalId"] == "senderId"  # one assignment per listed service principal
    assert tickets["principalType"] == "ServicePrincipal"
    service_bus = body(parse("main.bicep")["modules"]["serviceBus"])
    assert service_bus["params"]["ticketSenderPrincipalIds"] == "ticketSenderIds"
    assert service_bus["params"]["operatorPrincipalId"] == "principalId"
    for name in ("ticketSenderPrincipalIds", "principalId"):
        parameter = parse("main.bicep")["parameters"][name]
        assert (parameter["type"], parameter["default"]) == ("string", ""), name  # nobody unless listed


def test_the_operators_principal_type_is_left_to_arm() -> None:
    """azd's principal is a user at a desk and a service principal in CI: a fixed principalType
    fails one of them (UnmatchedPrincipalType). ARM looks the type up when none is sent; it is
    needed only for a principal created moments before ("Assign Azure roles using Azure Resource
    Manager templates", New service principal: https://learn.microsoft.com/azure/role-based-access-control/role-assignments-template#new-service-principal)."""
    (operator,) = [a for a in role_assignments() if a.symbol == "operatorSender"]
    assert "principalType" not in operator.body["properties"]
    assert "principalType" not in parse("main.bicep")["parameters"]
    given = load_json(INFRA / "main.parameters.json")["parameters"]
    assert all("AZURE_PRINCIPAL_TYPE" not in entry["value"] for entry in given.values())


def test_function_app_runs_on_flex_consumption_with_the_user_assigned_identity() -> None:
    (plan,) = of_type("app/function-app.bicep", "Microsoft.Web/serverfarms")
    assert plan.body["sku"] == {"tier": "FlexConsumption", "name": "FC1"}
    (site,) = of_type("app/function-app.bicep", "Microsoft.Web/sites")
    assert site.body["kind"] == "functionapp,linux"
    assert site.body["identity"]["type"] == "UserAssigned"
    properties = site.body["properties"]
    assert properties["httpsOnly"] is True
    assert path(properties, "siteConfig.minTlsVersion") == "1.2"
    assert path(properties, "functionAppConfig.runtime") == {"name": "python", "version": "3.11"}
    deployment = path(properties, "functionAppConfig.deployment.storage")
    assert deployment["type"] == "blobContainer"
    assert deployment["authentication"] == {
        "type": "UserAssignedIdentity",
        "userAssignedIdentityResourceId": "identityId",
    }


# Site properties Flex Consumption does not accept, from the "Flex Consumption plan deprecations"
# table of the Functions app settings reference
# (https://learn.microsoft.com/azure/azure-functions/functions-app-settings#flex-consumption-plan-deprecations):
# ftpsState ("FTPS not supported"), use32BitWorkerProcess, alwaysOn,
# windowsFxVersion, and the renamed preWarmedInstanceCount and functionAppScaleLimit.
FLEX_REJECTED_SITE_PROPERTIES = {
    "ftpsState",
    "use32BitWorkerProcess",
    "alwaysOn",
    "windowsFxVersion",
    "preWarmedInstanceCount",
    "functionAppScaleLimit",
}


def test_no_site_property_flex_consumption_rejects() -> None:
    (site,) = of_type("app/function-app.bicep", "Microsoft.Web/sites")
    properties = site.body["properties"]
    present = FLEX_REJECTED_SITE_PROPERTIES & (set(properties) | set(properties["siteConfig"]))
    assert not present, f"Flex Consumption rejects or ignores: {sorted(present)}"
    code = [
        line
        for line in (INFRA / "app" / "function-app.bicep").read_text(encoding="utf-8").splitlines()
        if not line.strip().startswith("//")
    ]
    assert not [line for line in code if "ftpsState" in line]


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


def test_service_bus_host_name_comes_from_the_namespace_endpoint() -> None:
    """The namespace's serviceBusEndpoint is "https://{name}.servicebus.windows.net:443/" in the
    public cloud and carries the sovereign clouds' own suffix elsewhere; the host name is its
    authority without the port, never a hard-coded public suffix."""
    output = parse("app/servicebus.bicep")["outputs"]["fullyQualifiedNamespace"]["value"]
    assert (
        render(output)
        == "index_accessor(split(index_accessor(split(namespace.properties.serviceBusEndpoint, /), 2), :), 0)"
    )
    assert "servicebus.windows.net" not in render(output)


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
