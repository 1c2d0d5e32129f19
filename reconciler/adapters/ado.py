"""Azure DevOps REST 7.1: service connections (service endpoints) and their pipeline permissions.

An azure-core async pipeline with a bearer-token policy for Azure DevOps' scope and
azure-core's retry policy (which honours Retry-After). One listing per project reads
every AzureRM connection of that project, failed and not-ready ones included.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from azure.core import AsyncPipelineClient
from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import ServiceRequestError, ServiceResponseError
from azure.core.pipeline.policies import (
    AsyncBearerTokenCredentialPolicy,
    AsyncRetryPolicy,
    DistributedTracingPolicy,
    HeadersPolicy,
    UserAgentPolicy,
)
from azure.core.rest import AsyncHttpResponse, HttpRequest

from reconciler.adapters.metering import MeteringPolicy, RequestMeter
from reconciler.adapters.pacing import AZURE_BUDGETS, AdoPacingPolicy, Budgets
from reconciler.adapters.transport import aiohttp_transport
from reconciler.cloud import Cloud
from reconciler.core.model import WORKLOAD_IDENTITY_SCHEME, PipelineAccess, ServiceConnection
from reconciler.failures import (
    Failure,
    NotFound,
    PermanentFailure,
    TemporaryFailure,
    failure_for_status,
    retry_after_seconds,
)

API_VERSION = "7.1"
CONNECTION_DATA_API_VERSION = "7.1-preview"  # connectionData is not in the 7.1 spec; preview is accepted
PIPELINE_PERMISSIONS_API_VERSION = "7.1-preview.1"  # the pipeline-permissions API exists only as a preview
# azure-core's retries, honouring Retry-After: ADO delays a busy caller up to 30 s before it answers
# 429, so backing off past that gains nothing.
RETRY_BACKOFF_FACTOR = 1.0
RETRY_BACKOFF_MAX = 30


class AdoAdapter:
    def __init__(
        self,
        credential: AsyncTokenCredential,
        cloud: Cloud,
        meter: RequestMeter,
        *,
        retry_total: int = 5,
        budgets: Budgets = AZURE_BUDGETS,
    ) -> None:
        policies = [
            # Suppress: a token ADO does not accept is answered 401, not 203 and a sign-in page.
            HeadersPolicy({"Accept": "application/json", "X-TFS-FedAuthRedirect": "Suppress"}),
            UserAgentPolicy("wif-reconciler"),
            AsyncRetryPolicy(
                retry_total=retry_total,
                retry_backoff_factor=RETRY_BACKOFF_FACTOR,
                retry_backoff_max=RETRY_BACKOFF_MAX,
            ),
            AsyncBearerTokenCredentialPolicy(credential, cloud.ado_scope),
            AdoPacingPolicy(budgets),  # after the retry policy: every attempt is paced
            MeteringPolicy(meter, "ado"),
            DistributedTracingPolicy(),  # a span per attempt when tracing is on, as azure-core's own clients
            # No ContentDecodePolicy: _send parses each body once; a second parse kept a second
            # copy of every listing (2,500 connections a project at 50,000 configs).
        ]
        self._client: AsyncPipelineClient[HttpRequest, AsyncHttpResponse] = AsyncPipelineClient(
            base_url=cloud.ado_url, policies=policies, transport=aiohttp_transport(cloud)
        )
        self._project_ids: dict[tuple[str, str], str] = {}
        self._organization_ids: dict[str, str] = {}

    async def close(self) -> None:
        await self._client.close()

    # ------------------------------------------------------------------ reads

    async def list_connections(self, organization: str, project: str) -> list[ServiceConnection]:
        body = await self._send(
            "GET",
            url_path(organization, project, "_apis", "serviceendpoint", "endpoints"),
            params={"type": "azurerm", "includeFailed": "true", "api-version": API_VERSION},
        )
        return [
            _connection(organization, project, item) for item in listed_items(body, "service connections")
        ]

    async def project_id(self, organization: str, project: str) -> str:
        key = (organization.lower(), project.lower())
        if key not in self._project_ids:
            body = await self._send(
                "GET", url_path(organization, "_apis", "projects", project), {"api-version": API_VERSION}
            )
            if not body or "id" not in body:
                raise NotFound(f"Azure DevOps project {organization}/{project} does not exist", status=404)
            self._project_ids[key] = str(body["id"])
        return self._project_ids[key]

    async def organization_id(self, organization: str) -> str | None:
        """The organization's id (connectionData's instanceId; community use, unconfirmed as documented)."""
        key = organization.lower()
        if key not in self._organization_ids:
            body = await self._send(
                "GET",
                url_path(organization, "_apis", "connectionData"),
                {"api-version": CONNECTION_DATA_API_VERSION},
            )
            instance = (body or {}).get("instanceId") if isinstance(body, dict) else None
            if not instance:
                return None
            self._organization_ids[key] = str(instance).lower()
        return self._organization_ids[key]

    async def authenticated_user(self, organization: str) -> str:
        """Who the organization sees signing in (connectionData's `authenticatedUser`): a member's name.

        A caller that is not a member of the organization is refused (401), so the answer itself
        is the membership check."""
        body = await self._send(
            "GET",
            url_path(organization, "_apis", "connectionData"),
            {"api-version": CONNECTION_DATA_API_VERSION},
        )
        user = (body or {}).get("authenticatedUser") if isinstance(body, dict) else None
        if not isinstance(user, dict) or not user.get("id"):
            raise PermanentFailure(
                f"Azure DevOps organization {organization} answered connectionData without an "
                "authenticated user",
                code="AnonymousCaller",
            )
        return str(user.get("providerDisplayName") or user["id"])

    async def has_permission(self, organization: str, namespace: str, permissions: int, token: str) -> bool:
        """Whether the caller holds every bit of `permissions` on `token` in a security namespace
        (Permissions - Has Permissions; organization administrators pass, as they would when acting)."""
        body = await self._send(
            "GET",
            url_path(organization, "_apis", "permissions", namespace, str(permissions)),
            {"tokens": token, "alwaysAllowAdministrators": "true", "api-version": API_VERSION},
        )
        values = (body or {}).get("value") if isinstance(body, dict) else body
        if not isinstance(values, list) or len(values) != 1 or not isinstance(values[0], bool):
            raise PermanentFailure(
                f"Azure DevOps answered a permission check with {str(body)[:200]!r}", code="UnexpectedAnswer"
            )
        return values[0]

    async def read_pipeline_access(
        self, organization: str, project: str, connection_id: str
    ) -> PipelineAccess:
        body = await self._send(
            "GET",
            url_path(
                organization, project, "_apis", "pipelines", "pipelinePermissions", "endpoint", connection_id
            ),
            {"api-version": PIPELINE_PERMISSIONS_API_VERSION},
        )
        return _pipeline_access(_mapping(body))

    # ------------------------------------------------------------------ writes

    async def create_connection(
        self, organization: str, project: str, name: str, settings: ConnectionSettings
    ) -> ServiceConnection:
        project_id = await self.project_id(organization, project)
        body = settings.endpoint(name, project_id, project)
        created = await self._send(
            "POST",
            url_path(organization, "_apis", "serviceendpoint", "endpoints"),
            {"api-version": API_VERSION},
            body,
        )
        return _connection(organization, project, created or {})

    async def update_connection(
        self, current: ServiceConnection, settings: ConnectionSettings, *, operation: str | None = None
    ) -> ServiceConnection:
        """Write the whole endpoint back with the settings applied (ADO's update replaces it)."""
        existing = await self._endpoint(current)
        project_id = await self.project_id(current.organization, current.project)
        body = settings.apply_to(existing, current.name, project_id, current.project)
        # The organization-level route, with the operation as a query parameter, is the one the 7.1
        # spec documents (Endpoints - Update Service Endpoint), for a conversion too.
        params = {"api-version": API_VERSION, **({"operation": operation} if operation else {})}
        path = url_path(current.organization, "_apis", "serviceendpoint", "endpoints", current.id)
        updated = await self._send("PUT", path, params, body)
        return _connection(current.organization, current.project, updated or {})

    async def delete_connection(self, current: ServiceConnection) -> None:
        project_id = await self.project_id(current.organization, current.project)
        try:
            await self._send(
                "DELETE",
                url_path(current.organization, "_apis", "serviceendpoint", "endpoints", current.id),
                {"projectIds": project_id, "api-version": API_VERSION},
            )
        except NotFound:
            return

    async def authorize_pipelines(
        self, organization: str, project: str, connection_id: str, access: PipelineAccess
    ) -> None:
        body: dict[str, Any] = {"resource": {"type": "endpoint", "id": connection_id}}
        if access.all_pipelines:
            body["allPipelines"] = {"authorized": True}
        else:
            body["pipelines"] = [
                {"id": pipeline, "authorized": True} for pipeline in sorted(access.pipeline_ids)
            ]
        await self._send(
            "PATCH",
            url_path(
                organization, project, "_apis", "pipelines", "pipelinePermissions", "endpoint", connection_id
            ),
            {"api-version": PIPELINE_PERMISSIONS_API_VERSION},
            body,
        )

    async def _endpoint(self, current: ServiceConnection) -> dict[str, Any]:
        body = await self._send(
            "GET",
            url_path(
                current.organization, current.project, "_apis", "serviceendpoint", "endpoints", current.id
            ),
            {"api-version": API_VERSION},
        )
        if not body:  # ADO answers 200 with a null body for an unknown id
            raise NotFound(f"service connection {current.key} ({current.id}) no longer exists", status=404)
        return dict(body)

    async def _send(
        self, method: str, path: str, params: Mapping[str, str], body: Mapping[str, Any] | None = None
    ) -> Any:
        request = HttpRequest(method, self._client.format_url(path), params=dict(params), json=body)
        try:
            response = await self._client.send_request(request)  # not streamed: the body is read
        except (ServiceRequestError, ServiceResponseError) as error:
            raise TemporaryFailure(
                f"Azure DevOps connection failed: {error.message}", code="ConnectionError"
            ) from error
        if response.status_code >= 400:
            raise _ado_failure(response)
        if response.status_code == 203 or (response.content and not _is_json(response)):
            # 203 and an HTML sign-in page is how ADO refuses a token unless told to suppress it.
            raise PermanentFailure(
                f"Azure DevOps answered {method} {path} with {response.status_code} and "
                f"{response.headers.get('Content-Type') or 'no content type'}, not JSON: a sign-in page "
                "means it did not accept the token",
                code="NotSignedIn",
                status=response.status_code,
            )
        return response.json() if response.content else None


class ConnectionSettings:
    """What the reconciler sets on an AzureRM workload-identity connection; the rest is kept."""

    def __init__(
        self, app_id: str, tenant_id: str, subscription_id: str, subscription_name: str, description: str
    ) -> None:
        self.app_id = app_id
        self.tenant_id = tenant_id
        self.subscription_id = subscription_id
        self.subscription_name = subscription_name
        self.description = description

    def endpoint(self, name: str, project_id: str, project: str) -> dict[str, Any]:
        """A new connection in Manual creation mode (automation must not use Automatic)."""
        base = {"type": "AzureRM", "url": "https://management.azure.com/", "owner": "library"}
        return self.apply_to(
            {**base, "description": self.description},
            name,
            project_id,
            project,
        )

    def apply_to(self, endpoint: dict[str, Any], name: str, project_id: str, project: str) -> dict[str, Any]:
        updated = dict(endpoint)
        # ADO reads these keys ignoring case (its own examples write `SubscriptionId`): a key set
        # here replaces the one of any case, never sits beside it.
        data = _setting(
            _mapping(updated.get("data")),
            dropped=frozenset({"revertschemedeadline"}),
            subscriptionId=self.subscription_id,
            subscriptionName=self.subscription_name,
            environment="AzureCloud",
            scopeLevel="Subscription",
            creationMode="Manual",
        )
        authorization = _mapping(updated.get("authorization"))
        generated = {
            k: v for k, v in _mapping(authorization.get("parameters")).items() if k.lower() in _GENERATED
        }
        parameters = _setting(generated, tenantid=self.tenant_id, serviceprincipalid=self.app_id)
        references = updated.get("serviceEndpointProjectReferences") or [
            {"projectReference": {"id": project_id, "name": project}, "name": name}
        ]
        updated.update(
            name=name,
            # Kept as it is: the ownership marker is written only when the reconciler creates the
            # connection, so an adopted (hand-made) one never reads as created by the reconciler.
            description=updated.get("description") or "",
            data=data,
            authorization={"scheme": WORKLOAD_IDENTITY_SCHEME, "parameters": parameters},
            serviceEndpointProjectReferences=references,
        )
        return updated


def url_path(*segments: str) -> str:
    """A URL path from names, each escaped: a project named '../x' stays one segment, never a step up."""
    if any(segment in {"", ".", ".."} for segment in segments):  # escaping leaves these as they are
        raise PermanentFailure(f"refusing a URL path with an empty or dot segment: {segments!r:.200}")
    return "/" + "/".join(quote(segment, safe="") for segment in segments)


_GENERATED = {"workloadidentityfederationissuer", "workloadidentityfederationsubject"}


def _mapping(value: object) -> dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}


def _setting(values: dict[str, Any], dropped: frozenset[str] = frozenset(), **new: Any) -> dict[str, Any]:
    """`values` with `new` set and the `dropped` keys removed, keys compared ignoring case."""
    replaced = {key.lower() for key in new} | dropped
    return {**{k: v for k, v in values.items() if k.lower() not in replaced}, **new}


def _lowered_keys(value: object) -> dict[str, Any]:
    """A `data` or `authorization.parameters` object with its keys in lower case, for reading."""
    return {str(k).lower(): v for k, v in _mapping(value).items()}


def _connection(organization: str, project: str, item: Mapping[str, Any]) -> ServiceConnection:
    authorization = _mapping(item.get("authorization"))
    parameters = _lowered_keys(authorization.get("parameters"))
    data = _lowered_keys(item.get("data"))
    # operationStatus is a free JObject in the spec: its keys are read ignoring case, like `data`'s.
    status = _lowered_keys(item.get("operationStatus"))
    return ServiceConnection(
        id=str(item.get("id") or ""),
        organization=organization,
        project=project,
        name=str(item.get("name") or ""),
        scheme=str(authorization.get("scheme", "")),
        app_id=_lower(parameters.get("serviceprincipalid")),
        tenant_id=_lower(parameters.get("tenantid")),
        subscription_id=_lower(data.get("subscriptionid")),
        subscription_name=data.get("subscriptionname"),
        issuer=parameters.get("workloadidentityfederationissuer"),
        subject=parameters.get("workloadidentityfederationsubject"),
        description=str(item.get("description") or ""),
        ready=item.get("isReady") is not False,  # optional in the spec: only an explicit false counts
        operation_state=str(status.get("state") or ""),
        status_message=str(status.get("statusmessage") or ""),
    )


def listed_items(body: Any, what: str) -> list[Mapping[str, Any]]:
    """The items of an ADO listing. The 7.1 spec documents the bare array; ADO (and the spec's own
    examples) wrap it as `{count, value}`: either is read. Anything else is refused, never guessed."""
    values = body.get("value") if isinstance(body, Mapping) else body
    if not isinstance(values, list):
        raise PermanentFailure(
            f"Azure DevOps answered a listing of {what} with {str(body)[:200]!r}", code="UnexpectedAnswer"
        )
    return [item for item in values if isinstance(item, Mapping)]


def _pipeline_access(body: Mapping[str, Any]) -> PipelineAccess:
    """`allPipelines` and `pipelines` are both optional in an answer (absent: nothing authorized)."""
    everyone = _mapping(body.get("allPipelines")).get("authorized") is True
    pipelines = body.get("pipelines") or []
    entries = [_mapping(p) for p in pipelines] if isinstance(pipelines, list) else []
    if len(entries) != len(pipelines) or any(type(p.get("id")) is not int for p in entries):
        raise PermanentFailure(
            f"Azure DevOps answered pipeline permissions with {str(pipelines)[:200]!r}",
            code="UnexpectedAnswer",
        )
    listed = frozenset(int(p["id"]) for p in entries if p.get("authorized") is True)
    return PipelineAccess(all_pipelines=everyone, pipeline_ids=listed)


def _lower(value: object) -> str | None:
    return str(value).lower() if value else None


def _is_json(response: AsyncHttpResponse) -> bool:
    content_type = (response.headers.get("Content-Type") or "").split(";")[0].strip().lower()
    return content_type == "application/json" or content_type.endswith("+json")


def _ado_failure(response: AsyncHttpResponse) -> Failure:
    """Azure DevOps has no cases of its own: the mapping every adapter shares."""
    status = response.status_code
    try:
        body = response.json()
    except ValueError:
        body = {}
    message = str(body.get("message") or response.text()[:300]) if isinstance(body, dict) else ""
    code = str(body.get("typeKey", "")) if isinstance(body, dict) else ""
    text = f"Azure DevOps answered {status} {code}: {message}"
    retry_after = retry_after_seconds(response.headers.get("Retry-After"), default=10.0)
    return failure_for_status(status, text, code=code, retry_after=retry_after)
