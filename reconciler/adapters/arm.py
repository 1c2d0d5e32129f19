"""Azure RBAC role assignments (Microsoft.Authorization 2022-04-01), via azure-mgmt-authorization (aio).

Reads list one scope at a time (a subscription: everything at, above and below it),
paged by the SDK. Writes always send `principalType: ServicePrincipal` (the default is
User, and naming the type also avoids the replication-delay failure for new principals).
Event Grid's event subscriptions of a subscription's system topics are read through the same
pipeline (doctor's check of drift events), with paths built from parsed ids.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote

from azure.core import AsyncPipelineClient
from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError
from azure.core.pipeline import AsyncPipeline
from azure.core.pipeline.policies import (
    AsyncRedirectPolicy,
    AsyncRetryPolicy,
    ContentDecodePolicy,
    DistributedTracingPolicy,
    HeadersPolicy,
    RequestIdPolicy,
    SensitiveHeaderCleanupPolicy,
    UserAgentPolicy,
)
from azure.core.rest import AsyncHttpResponse, HttpRequest
from azure.mgmt.authorization.aio import AuthorizationManagementClient
from azure.mgmt.authorization.v2022_04_01.models import RoleAssignmentCreateParameters
from azure.mgmt.core.exceptions import ARMErrorFormat
from azure.mgmt.core.policies import (
    ARMHttpLoggingPolicy,
    AsyncARMAutoResourceProviderRegistrationPolicy,
    AsyncARMChallengeAuthenticationPolicy,
)

from reconciler.adapters.metering import MeteringPolicy, RequestMeter
from reconciler.adapters.pacing import AZURE_BUDGETS, ArmPacingPolicy, Budgets
from reconciler.adapters.transport import aiohttp_transport
from reconciler.cloud import Cloud
from reconciler.core.identifiers import ArmScope, Guid, IdentifierError
from reconciler.core.model import CustomRole, RoleAssignment
from reconciler.failures import (
    Conflict,
    Failure,
    NotFound,
    PermanentFailure,
    TemporaryFailure,
    failure_for_status,
    retry_after_seconds,
)

API_VERSION = "2022-04-01"
EVENT_GRID_API_VERSION = "2022-06-15"  # Microsoft.EventGrid, as infra/app/events-topic*.bicep
SUBSCRIPTION_EVENTS = "Microsoft.Resources.Subscriptions"  # the system topic type of a subscription
# azure-core's retries, honouring Retry-After: ARM's token buckets refill in seconds (25 reads, 10
# writes a second), so a short exponential backoff, capped at a minute, waits long enough.
RETRY_BACKOFF_FACTOR = 1.0
RETRY_BACKOFF_MAX = 60
_EXISTING_ID = re.compile(
    r"(/[^\s'\"]*/providers/Microsoft\.Authorization/roleAssignments/[0-9a-fA-F-]{36})", re.I
)
_ASSIGNMENT_NAME = re.compile(
    r"existing role assignment is '?([0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12})",
    re.I,
)
_T = TypeVar("_T")
_ASSIGNMENTS = "/providers/Microsoft.Authorization/roleAssignments/"
_ROLE_DEFINITIONS = ("providers", "Microsoft.Authorization", "roleDefinitions")
_SYSTEM_TOPICS = ("providers", "Microsoft.EventGrid", "systemTopics")


@dataclass(frozen=True)
class AssignmentListing:
    """What a listing of role assignments found, and how many pages ARM served it in."""

    assignments: list[RoleAssignment]
    pages: int


@dataclass(frozen=True)
class EventRoute:
    """An Event Grid event subscription of a subscription's system topic: where it delivers, and what."""

    topic: ArmScope
    name: str
    endpoint_type: str  # ServiceBusQueue, WebHook, ...
    destination_id: str  # the destination's resource id ("" for a webhook)
    event_types: tuple[str, ...]  # includedEventTypes; empty means every type


class ArmAdapter:
    def __init__(
        self,
        credential: AsyncTokenCredential,
        cloud: Cloud,
        meter: RequestMeter,
        *,
        retry_total: int = 5,
        budgets: Budgets = AZURE_BUDGETS,
    ) -> None:
        self._arm_url = cloud.arm_url.rstrip("/")
        # One pipeline for every ARM request: the SDK's operations and the listings it has none for
        # (Event Grid) share its token, pacing, metering, retries and connections.
        pipeline = _arm_pipeline(credential, cloud, meter, retry_total=retry_total, budgets=budgets)
        # Role-assignment operations take the scope in the path; the client's subscription is unused.
        self._client = AuthorizationManagementClient(
            credential,
            "00000000-0000-0000-0000-000000000000",
            base_url=cloud.arm_url,
            api_version=API_VERSION,
            pipeline=pipeline,
        )
        self._requests: AsyncPipelineClient[HttpRequest, AsyncHttpResponse] = AsyncPipelineClient(
            cloud.arm_url, pipeline=pipeline
        )

    async def close(self) -> None:
        await self._client.close()  # type: ignore[no-untyped-call]  # closes the shared pipeline

    async def list_assignments(self, scope: ArmScope, principal_id: str | None = None) -> AssignmentListing:
        """Assignments at, above and below `scope`; only one principal's when given (filtered by ARM).

        The listing counts the pages the SDK's pager fetched: what listing `scope` costs in requests.
        """
        query = f"principalId eq '{Guid(principal_id, 'principal id')}'" if principal_id else None

        async def collect() -> AssignmentListing:
            listed = self._client.role_assignments.list_for_scope(scope_path(scope), filter=query)
            found: list[RoleAssignment] = []
            pages = 0
            async for page in listed.by_page():
                pages += 1
                found.extend([_assignment(item) async for item in page])
            return AssignmentListing(found, pages)

        result: AssignmentListing = await self._call(collect())
        return result

    async def list_assignments_of(self, scope: ArmScope, principal_id: str) -> list[RoleAssignment]:
        """A principal's assignments at, above and below `scope`, those through its groups included
        (ARM's `assignedTo()` filter)."""
        query = f"assignedTo('{Guid(principal_id, 'principal id')}')"

        async def collect() -> list[RoleAssignment]:
            pages = self._client.role_assignments.list_for_scope(scope_path(scope), filter=query)
            return [_assignment(item) async for item in pages]

        result: list[RoleAssignment] = await self._call(collect())
        return result

    async def create_assignment(
        self, scope: ArmScope, name: str, role_id: str, principal_id: str, description: str
    ) -> RoleAssignment:
        """Create the assignment. Raises Conflict with the existing id on RoleAssignmentExists."""
        parameters = RoleAssignmentCreateParameters(
            role_definition_id=role_definition_path(scope.subscription, role_id),
            principal_id=str(Guid(principal_id, "principal id")),
            principal_type="ServicePrincipal",
            description=description,
        )
        request = self._client.role_assignments.create(scope_path(scope), _segment(Guid(name)), parameters)
        return _assignment(await self._call(request))

    async def delete_assignment(self, assignment_id: str) -> None:
        scope, name = parse_assignment_id(assignment_id)
        try:
            await self._call(self._client.role_assignments.delete(scope_path(scope), _segment(name)))
        except NotFound:
            return  # already gone

    async def get_role_definition(self, scope: ArmScope, role_id: str) -> CustomRole | None:
        """The role's definition read at `scope` (Role Definitions - Get): ARM answers it where the
        role is assignable, at or below its assignable scopes, to a caller with roleDefinitions/read
        there. Reading at the scope of a grant needs no more rights than writing the grant does (a
        reconciler whose role is on a resource group only may not read at the subscription)."""
        try:
            found = await self._call(self._client.role_definitions.get(scope_path(scope), str(Guid(role_id))))
        except NotFound:
            return None
        permissions = found.permissions or []
        return CustomRole(
            id=str(found.name).lower(),
            name=found.role_name or "",
            actions=tuple(a for p in permissions for a in p.actions or []),
            not_actions=tuple(a for p in permissions for a in p.not_actions or []),
        )

    async def list_event_routes(self, subscription: Guid) -> list[EventRoute]:
        """The event subscriptions of the subscription's system topics of its own events
        (System Topics - List By Subscription, then System Topic Event Subscriptions - List)."""
        topics_path = "/" + "/".join(_segment(s) for s in ("subscriptions", subscription, *_SYSTEM_TOPICS))
        routes: list[EventRoute] = []
        for topic in await self._list(topics_path, EVENT_GRID_API_VERSION):
            if (
                str(_object(topic.get("properties")).get("topicType", "")).lower()
                != SUBSCRIPTION_EVENTS.lower()
            ):
                continue
            scope = _parsed_id(topic.get("id"), "system topic id")
            listed = await self._list(scope_path(scope) + "/eventSubscriptions", EVENT_GRID_API_VERSION)
            routes += [_event_route(scope, item) for item in listed]
        return routes

    async def _list(self, path: str, api_version: str) -> list[dict[str, Any]]:
        """Every item of an ARM list, following nextLink, through the shared pipeline (the token,
        pacing, metering and retries of every other call)."""
        items: list[dict[str, Any]] = []
        request = HttpRequest("GET", self._requests.format_url(path), params={"api-version": api_version})
        while True:
            response = await self._call(self._requests.send_request(request))
            if response.status_code >= 400:
                raise _arm_failure(HttpResponseError(response=response, error_format=ARMErrorFormat))
            body = response.json()
            if not isinstance(body, dict) or not isinstance(body.get("value"), list):
                raise PermanentFailure(f"ARM answered an unexpected list at {path}", code="InvalidResponse")
            items += [item for item in body["value"] if isinstance(item, dict)]
            next_link = str(body.get("nextLink") or "")
            if not next_link:
                return items
            if not next_link.startswith(self._arm_url + "/"):  # the token goes only to ARM
                raise PermanentFailure(
                    f"refusing a nextLink outside ARM: {next_link[:200]}", code="InvalidResponse"
                )
            request = HttpRequest("GET", next_link)

    async def _call(self, request: Awaitable[_T]) -> _T:
        try:
            return await request
        except HttpResponseError as error:
            raise _arm_failure(error) from error
        except (ServiceRequestError, ServiceResponseError) as error:
            raise TemporaryFailure(
                f"ARM connection failed: {error.message}", code="ConnectionError"
            ) from error


def _arm_pipeline(
    credential: AsyncTokenCredential, cloud: Cloud, meter: RequestMeter, *, retry_total: int, budgets: Budgets
) -> AsyncPipeline[HttpRequest, AsyncHttpResponse]:
    """The policies azure-mgmt-core's ARM client builds by default, in its order, with ours per attempt
    (after the retry policy: every attempt is paced under ARM's token buckets, then counted)."""
    # Typed loosely, as azure-core's own builder: its policy classes are generic over sync and async.
    policies: list[Any] = [
        RequestIdPolicy(),
        HeadersPolicy(),
        UserAgentPolicy("wif-reconciler"),
        ContentDecodePolicy(),
        AsyncARMAutoResourceProviderRegistrationPolicy(),
        AsyncRedirectPolicy(),
        AsyncRetryPolicy(
            retry_total=retry_total,
            retry_backoff_factor=RETRY_BACKOFF_FACTOR,
            retry_backoff_max=RETRY_BACKOFF_MAX,
        ),
        AsyncARMChallengeAuthenticationPolicy(credential, cloud.arm_scope),
        ArmPacingPolicy(budgets),
        MeteringPolicy(meter, "arm"),
        DistributedTracingPolicy(),
        SensitiveHeaderCleanupPolicy(),  # no token on a redirect to another host
        ARMHttpLoggingPolicy(),
    ]
    return AsyncPipeline(aiohttp_transport(cloud), policies)


# The SDK puts scopes and ids into its URL templates unescaped (skip_quote), and the HTTP
# client would then collapse '..': every path is built here from parsed segments, each escaped.


def _segment(text: str) -> str:
    if text in {"", ".", ".."}:  # escaping leaves these as they are; parsed values never hold them
        raise PermanentFailure(f"refusing an empty or dot segment in an ARM path: {text!r}")
    return quote(text, safe="")


def scope_path(scope: ArmScope) -> str:
    return "/" + "/".join(_segment(s) for s in scope.segments)


def role_definition_path(subscription: Guid | None, role_id: str) -> str:
    """A role definition's id: under the subscription, or at the tenant root for management groups."""
    segments = (("subscriptions", subscription) if subscription else ()) + (*_ROLE_DEFINITIONS, Guid(role_id))
    return "/" + "/".join(_segment(s) for s in segments)


def parse_assignment_id(assignment_id: str) -> tuple[ArmScope, Guid]:
    """The scope and name in `<scope>/providers/Microsoft.Authorization/roleAssignments/<guid>`."""
    at = assignment_id.lower().rfind(_ASSIGNMENTS.lower())
    try:
        if at < 0:
            raise IdentifierError("role assignment id", f"expected <scope>{_ASSIGNMENTS}<guid>")
        return ArmScope.parse(assignment_id[:at], "role assignment id"), Guid(
            assignment_id[at + len(_ASSIGNMENTS) :], "role assignment name"
        )
    except IdentifierError as error:
        raise PermanentFailure(
            f"refusing a malformed role assignment id: {error}", code="InvalidId"
        ) from error


def _scope_and_name(assignment_id: str) -> tuple[str, str]:
    """The scope and name of a listed assignment's id, the tenant root's (`/providers/...`: a scope
    ArmScope does not model, listed above every subscription) as `/`."""
    if assignment_id.lower().startswith(_ASSIGNMENTS.lower()):
        try:
            return "/", str(Guid(assignment_id[len(_ASSIGNMENTS) :], "role assignment name"))
        except IdentifierError as error:
            raise PermanentFailure(
                f"refusing a malformed role assignment id: {error}", code="InvalidId"
            ) from error
    scope, name = parse_assignment_id(assignment_id)
    return str(scope), str(name)


def _parsed_id(text: object, field: str) -> ArmScope:
    try:
        return ArmScope.parse(text, field)
    except IdentifierError as error:
        raise PermanentFailure(f"refusing a malformed {field}: {error}", code="InvalidId") from error


def _object(value: object) -> dict[str, Any]:
    """A JSON object of a response, or an empty one where it holds something else."""
    return value if isinstance(value, dict) else {}


def _event_route(topic: ArmScope, item: dict[str, Any]) -> EventRoute:
    properties = _object(item.get("properties"))
    # Identity-based delivery (what infra/ creates) nests the destination; the other kind does not.
    destination = _object(properties.get("destination")) or _object(
        _object(properties.get("deliveryWithResourceIdentity")).get("destination")
    )
    event_types = _object(properties.get("filter")).get("includedEventTypes")
    return EventRoute(
        topic=topic,
        name=str(item.get("name", "")),
        endpoint_type=str(destination.get("endpointType", "")),
        destination_id=str(_object(destination.get("properties")).get("resourceId") or ""),
        event_types=tuple(str(t) for t in event_types) if isinstance(event_types, list) else (),
    )


def _assignment(item: Any) -> RoleAssignment:
    scope, name = item.scope, item.name
    if not scope or not name:
        # Both are optional (read-only) in the 2022-04-01 spec: the id holds them,
        # `{scope}/providers/Microsoft.Authorization/roleAssignments/{name}`.
        if not item.id:
            raise PermanentFailure("ARM answered a role assignment without an id", code="InvalidResponse")
        id_scope, id_name = _scope_and_name(str(item.id))
        scope, name = scope or id_scope, name or id_name
    return RoleAssignment(
        id=str(item.id),
        name=str(name),
        scope=str(scope),  # canonicalised by RoleAssignment
        role_id=str(item.role_definition_id).rsplit("/", 1)[-1].lower(),
        principal_id=str(item.principal_id).lower(),
        description=item.description or "",
        condition=item.condition or "",
        condition_version=item.condition_version or "",
    )


def _arm_failure(error: HttpResponseError) -> Failure:
    """ARM's own codes first, then the mapping every adapter shares."""
    status = error.status_code or 0
    code = error.error.code if error.error and error.error.code else ""
    message = error.error.message if error.error and error.error.message else str(error.message)
    text = f"ARM answered {status} {code}: {message}"
    if code in {"RoleAssignmentNotFound", "RoleDefinitionDoesNotExist"}:
        return NotFound(text, code=code, status=status)
    if code == "RoleAssignmentExists":
        return Conflict(text, code=code, status=status, existing_id=_existing_id(message))
    if code == "PrincipalNotFound":
        # Replication delay or a wrong principal: the engine decides, by how new the principal is.
        return TemporaryFailure(text, retry_after=10.0, code=code, status=status)
    response: Any = error.response
    header = response.headers.get("Retry-After") if response is not None else None
    retry_after = retry_after_seconds(header, default=10.0)
    return failure_for_status(status, text, code=code, retry_after=retry_after)


def _existing_id(message: str) -> str:
    """The assignment RoleAssignmentExists names: a full id, or its name (ARM may drop the dashes)."""
    full = _EXISTING_ID.search(message)
    if full:
        return full.group(1)
    name = _ASSIGNMENT_NAME.search(message)
    if not name:
        return ""
    digits = name.group(1).replace("-", "").lower()
    return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"
