"""Event Grid in the simulator's ARM, read-only: the system topics of a subscription and the event
subscriptions of a topic, as infra/app/events-subscription.bicep creates them, behind the caller's
RBAC read right (docs/simulator.md, "Event Grid")."""

from __future__ import annotations

from typing import Any

from azure.core.rest import HttpRequest
from azure.mgmt.authorization.aio import AuthorizationManagementClient

from cloudsim.testing import SAMPLE_EVENTS_QUEUE, SAMPLE_SUBSCRIPTION, RunningSimulator

API = {"api-version": "2022-06-15"}
TOPICS = f"/subscriptions/{SAMPLE_SUBSCRIPTION}/providers/Microsoft.EventGrid/systemTopics"


async def get(arm: AuthorizationManagementClient, path: str, **params: str) -> tuple[int, Any]:
    pipeline = arm._client  # the SDK client's pipeline: its token and transport
    response = await pipeline.send_request(HttpRequest("GET", pipeline.format_url(path), params=params))
    return response.status_code, response.json()


async def test_the_sample_world_has_a_system_topic_delivering_role_assignment_events(
    arm: AuthorizationManagementClient,
) -> None:
    status, topics = await get(arm, TOPICS, **API)
    assert status == 200
    [topic] = topics["value"]
    assert topic["type"] == "Microsoft.EventGrid/systemTopics"
    assert topic["properties"]["source"] == f"/subscriptions/{SAMPLE_SUBSCRIPTION}"
    assert topic["properties"]["topicType"] == "Microsoft.Resources.Subscriptions"

    status, listed = await get(arm, topic["id"] + "/eventSubscriptions", **API)
    assert status == 200
    [subscription] = listed["value"]
    properties = subscription["properties"]
    assert subscription["name"] == "wif-role-assignments"
    assert properties["deliveryWithResourceIdentity"]["destination"] == {
        "endpointType": "ServiceBusQueue",
        "properties": {"resourceId": SAMPLE_EVENTS_QUEUE},
    }
    assert properties["filter"]["includedEventTypes"] == [
        "Microsoft.Resources.ResourceWriteSuccess",
        "Microsoft.Resources.ResourceDeleteSuccess",
    ]
    assert properties["filter"]["advancedFilters"][0]["values"] == [
        "Microsoft.Authorization/roleAssignments/write",
        "Microsoft.Authorization/roleAssignments/delete",
    ]


async def test_reads_need_a_read_right_an_api_version_and_an_existing_topic(
    arm: AuthorizationManagementClient, cloud_env: RunningSimulator
) -> None:
    missing_topic = (
        TOPICS.replace("/providers", "/resourceGroups/rg-none/providers") + "/nope/eventSubscriptions"
    )
    status, body = await get(arm, missing_topic, **API)
    assert (status, body["error"]["code"]) == (404, "ResourceNotFound")
    status, body = await get(arm, TOPICS)
    assert (status, body["error"]["code"]) == (400, "MissingApiVersionParameter")

    world = cloud_env.world
    state = world.to_json()
    for assignment in state["role_assignments"]:  # the reconciler's assignments only: no */read
        assignment["role_definition_guid"] = "0d0c7000-0000-4000-8000-000000000009"
    state["role_definitions"] = [r.to_json() for r in world.role_definitions] + [
        {
            "id": "0d0c7000-0000-4000-8000-000000000009",
            "role_name": "Role assignments only",
            "actions": ["Microsoft.Authorization/roleAssignments/*"],
        }
    ]
    await cloud_env.admin.load_state(state)
    status, body = await get(arm, TOPICS, **API)
    assert (status, body["error"]["code"]) == (403, "AuthorizationFailed")
    assert "'Microsoft.EventGrid/systemTopics/read' over scope '/subscriptions/" in body["error"]["message"]
