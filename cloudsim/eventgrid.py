"""Azure Resource Manager, Microsoft.EventGrid 2022-06-15, read-only: the system topics of a subscription
and the event subscriptions of a system topic (what infra/app/events-subscription.bicep creates).

Shapes follow the REST reference (System Topics - List By Subscription; System Topic Event
Subscriptions - List); a caller without the read right at or above the scope gets ARM's 403
AuthorizationFailed (docs/simulator.md, "Event Grid").
"""

from __future__ import annotations

import re

from cloudsim.api import ApiError, Call, Reply
from cloudsim.rights import rbac_allows, scope_is_within
from cloudsim.state import EventSubscription, JsonObject, SystemTopic, World
from cloudsim.tokens import caller_of

_PROVIDER = r"/providers/Microsoft\.EventGrid/systemTopics"
SYSTEM_TOPICS = rf"/subscriptions/(?P<subscription>[^/]+){_PROVIDER}"
EVENT_SUBSCRIPTIONS = (
    rf"/subscriptions/(?P<subscription>[^/]+)/resourceGroups/(?P<group>[^/]+){_PROVIDER}/(?P<topic>[^/]+)"
    r"/eventSubscriptions"
)
TOPICS_READ = "Microsoft.EventGrid/systemTopics/read"
EVENT_SUBSCRIPTIONS_READ = "Microsoft.EventGrid/systemTopics/eventSubscriptions/read"


class EventGrid:
    def __init__(self, world: World) -> None:
        self.world = world

    def list_system_topics(self, call: Call, match: re.Match[str]) -> Reply:
        scope = f"/subscriptions/{match['subscription']}"
        _require(self.world, call, scope, TOPICS_READ)
        topics = [t for t in self.world.system_topics if scope_is_within(t.id, scope)]
        return Reply(200, {"value": [render_topic(t) for t in topics]})

    def list_event_subscriptions(self, call: Call, match: re.Match[str]) -> Reply:
        scope = call.path.rsplit("/eventSubscriptions", 1)[0]
        _require(self.world, call, scope, EVENT_SUBSCRIPTIONS_READ)
        topic = next((t for t in self.world.system_topics if scope_is_within(t.id, scope)), None)
        if topic is None:
            raise ApiError(
                404,
                "ResourceNotFound",
                f"The Resource 'Microsoft.EventGrid/systemTopics/{match['topic']}' under resource group "
                f"'{match['group']}' was not found.",
            )
        return Reply(200, {"value": [render_event_subscription(topic, e) for e in topic.event_subscriptions]})


def _require(world: World, call: Call, scope: str, operation: str) -> None:
    caller = caller_of(call.headers.get("Authorization")) or ""
    if not rbac_allows(world, caller, scope, operation):
        raise ApiError(
            403,
            "AuthorizationFailed",
            f"The client '{caller}' with object id '{caller}' does not have authorization to perform "
            f"action '{operation}' over scope '{scope}' or the scope is invalid. "
            "If access was recently granted, please refresh your credentials.",
        )


def render_topic(topic: SystemTopic) -> JsonObject:
    return {
        "id": topic.id,
        "name": topic.name,
        "type": "Microsoft.EventGrid/systemTopics",
        "location": "global",
        "identity": {"type": "SystemAssigned"},
        "properties": {
            "source": f"/subscriptions/{topic.subscription}",
            "topicType": topic.topic_type,
            "metricResourceId": topic.name,
            "provisioningState": "Succeeded",
        },
    }


def render_event_subscription(topic: SystemTopic, subscription: EventSubscription) -> JsonObject:
    return {
        "id": f"{topic.id}/eventSubscriptions/{subscription.name}",
        "name": subscription.name,
        "type": "Microsoft.EventGrid/systemTopics/eventSubscriptions",
        "properties": {
            "topic": topic.id,
            "provisioningState": "Succeeded",
            "eventDeliverySchema": "EventGridSchema",
            # Delivered with the topic's identity: Azure answers `destination` inside
            # deliveryWithResourceIdentity and none at the top level.
            "deliveryWithResourceIdentity": {
                "identity": {"type": "SystemAssigned"},
                "destination": {
                    "endpointType": "ServiceBusQueue",
                    "properties": {"resourceId": subscription.queue_id},
                },
            },
            "filter": {
                "includedEventTypes": list(subscription.included_event_types),
                "advancedFilters": [
                    {
                        "operatorType": "StringIn",
                        "key": "data.operationName",
                        "values": subscription.operation_names,
                    }
                ],
            },
            "retryPolicy": {"maxDeliveryAttempts": 30, "eventTimeToLiveInMinutes": 1440},
        },
    }


EVENT_SUBSCRIPTION = "wif-role-assignments"  # infra/app/events-topic-subscription.bicep


def provision_drift_events(world: World, events_queue_id: str, token: str = "sim") -> World:
    """What `azd provision` creates on each subscription the world lists (driftEvents, the default):
    a system topic in its own resource group and the event subscription to the events queue.
    Idempotent; returns the world."""
    for subscription in world.settings.subscriptions:
        scope = f"/subscriptions/{subscription}"
        if any(scope_is_within(t.id, scope) for t in world.system_topics):
            continue
        world.system_topics.append(
            SystemTopic(
                name=f"evgt-wif-{token}",
                subscription=subscription,
                resource_group=f"rg-wif-events-{token}",
                event_subscriptions=[EventSubscription(EVENT_SUBSCRIPTION, events_queue_id)],
            )
        )
    return world
