"""Microsoft Graph (Entra): applications, service principals and federated credentials, via msgraph-sdk.

Reads are bulk: `$filter=appId in (...)` (Graph allows 15 values per `in`) with
`$expand=federatedIdentityCredentials`, 20 such requests per `$batch`. The SDK's
middleware retries throttled top-level requests (honouring Retry-After) but not the
sub-requests of a batch, so those are retried here.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import ssl
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from contextvars import ContextVar
from typing import Any, TypeVar
from urllib.parse import quote, urlencode, urlsplit

import httpx
from azure.core.credentials_async import AsyncTokenCredential
from kiota_abstractions.api_error import APIError
from kiota_abstractions.base_request_configuration import RequestConfiguration
from kiota_abstractions.default_query_parameters import QueryParameters
from kiota_abstractions.method import Method
from kiota_abstractions.request_information import RequestInformation
from kiota_authentication_azure.azure_identity_authentication_provider import (
    AzureIdentityAuthenticationProvider,
)
from kiota_http.kiota_client_factory import KiotaClientFactory
from kiota_http.middleware.options import RetryHandlerOption
from msgraph.generated.applications.item.federated_identity_credentials import (
    federated_identity_credentials_request_builder as credentials_builder,
)
from msgraph.generated.applications.item.owners import owners_request_builder as owners_builder
from msgraph.generated.models.application import Application as GraphApplication
from msgraph.generated.models.federated_identity_credential import FederatedIdentityCredential
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.generated.models.reference_create import ReferenceCreate
from msgraph.generated.models.service_principal import ServicePrincipal
from msgraph.generated.service_principals.item.owned_objects.graph_application import (
    graph_application_request_builder as owned_applications,
)
from msgraph.graph_request_adapter import GraphRequestAdapter
from msgraph.graph_service_client import GraphServiceClient
from msgraph_core import GraphClientFactory
from msgraph_core.middleware import GraphTelemetryHandler

from reconciler.adapters.metering import THROTTLED, MeteringTransport, RequestMeter
from reconciler.adapters.pacing import (
    AZURE_BUDGETS,
    Budgets,
    GraphPacer,
    GraphPacingHandler,
    graph_request_units,
)
from reconciler.cloud import Cloud
from reconciler.core.identifiers import Guid
from reconciler.core.model import (
    APPLICATION_TAG,
    TOKEN_EXCHANGE_AUDIENCE,
    Application,
    FederatedCredential,
    Ownership,
)
from reconciler.core.tenancy import tenant_of_tags
from reconciler.failures import (
    Conflict,
    Failure,
    NotFound,
    PermanentFailure,
    TemporaryFailure,
    failure_for_status,
    retry_after_seconds,
)

MAX_IN_VALUES = 15  # Graph's limit on values in one `in` filter
MAX_BATCH = 20  # Graph's limit on requests in one $batch
# Graph's 400 for adding an owner (or member) that is one already.
ALREADY_REFERENCED = "One or more added object references already exist"
# Graph caps a page at 100 objects with $expand whatever $top asks; the applications are read
# with their credentials expanded, so that is the page size to plan listings with.
EXPANDED_PAGE_SIZE = 100
# Resource units one read of applications costs (identity throttling table): 2, +1 for $expand,
# -1 for $select. Graph's smallest budget is 3,500 units per app and tenant per 10 seconds.
APPLICATION_READ_UNITS = graph_request_units("GET", "/applications?$select=id&$expand=credentials")
GRAPH_UNITS_PER_WINDOW = int(AZURE_BUDGETS.graph_units_per_10s)
# Graph retries (kiota's RetryHandler, which honours Retry-After): 5 retries, 3 s base delay.
GRAPH_RETRY = RetryHandlerOption(delay=3.0, max_retries=5)
# `x-ms-throttle-priority` for this task's requests: sweeps send "low", so Graph throttles them
# before the ticket-driven passes when the tenant is busy.
throttle_priority: ContextVar[str | None] = ContextVar("wif_graph_throttle_priority", default=None)
BATCH_ATTEMPTS = 4  # first try plus retries of throttled sub-requests
OWNED_PAGE_SIZE = 999  # $top for the ownedObjects listing (no $expand, so Graph's largest page)
_APP_FIELDS = ["id", "appId", "displayName", "tags"]
# Clashes with an existing object, whatever the status (a credential's issuer and subject taken: 400).
_CONFLICT_CODES = frozenset(
    {"Request_MultipleObjectsWithSameKeyValue", "InvalidFederatedIdentityCredentialValue"}
)
_T = TypeVar("_T")


class GraphAdapter:
    def __init__(
        self,
        credential: AsyncTokenCredential,
        cloud: Cloud,
        meter: RequestMeter,
        *,
        concurrency: int = 8,
        timeout: float = 30.0,
        budgets: Budgets = AZURE_BUDGETS,
    ) -> None:
        # Our own transport, closed by close(): msgraph-core wraps the client's transport in one
        # whose aclose() does not close the wrapped one, so its connections would stay open.
        self._transport = httpx.AsyncHTTPTransport(
            verify=ssl.create_default_context(cafile=cloud.ca_bundle) if cloud.ca_bundle else True,
            limits=httpx.Limits(max_connections=concurrency * 2),
        )
        http = httpx.AsyncClient(
            transport=MeteringTransport(self._transport, meter, "graph"),  # every attempt, retries too
            timeout=timeout,
            event_hooks={"request": [_send_priority]},
        )
        # The SDK's default middleware (retry honouring Retry-After, redirects, ...), then the pacer,
        # last before the transport so that every attempt spends from the budget.
        middleware = [
            *KiotaClientFactory.get_default_middleware({GRAPH_RETRY.get_key(): GRAPH_RETRY}),
            GraphTelemetryHandler(),
            GraphPacingHandler(GraphPacer(budgets)),
        ]
        self._http = GraphClientFactory.create_with_custom_middleware(middleware, client=http)
        auth = AzureIdentityAuthenticationProvider(
            credential, scopes=[cloud.graph_scope], allowed_hosts=[str(urlsplit(cloud.graph_url).hostname)]
        )
        adapter = GraphRequestAdapter(auth, client=self._http)
        adapter.base_url = f"{cloud.graph_url}/v1.0"
        self._adapter = adapter
        self._client = GraphServiceClient(request_adapter=adapter)
        self._base_url = adapter.base_url
        self._limit = asyncio.Semaphore(concurrency)
        self._credential, self._scope = credential, cloud.graph_scope
        self._meter = meter
        self._principal_id: str | None = None

    async def close(self) -> None:
        await self._http.aclose()
        await self._transport.aclose()

    # ------------------------------------------------------------------ reads

    async def read_applications(
        self, app_ids: Iterable[str], display_names: Iterable[str] = (), *, list_all: bool = False
    ) -> list[Application]:
        """The applications with these client ids or display names, with credentials and principal ids.

        By default with filtered reads; with `list_all`, by paging through every application of
        the tenant and keeping the wanted ones (cheaper when they are most of the tenant).
        """
        ids, names = sorted(set(app_ids)), sorted(set(display_names))
        if list_all:
            wanted_ids, wanted_names = set(ids), set(names)
            # Each page is sifted as it arrives: only the wanted applications are kept in memory.
            apps = await self._batched(
                [self._apps_request(None, ())],
                keep=lambda a: str(a["appId"]).lower() in wanted_ids or a.get("displayName") in wanted_names,
            )
        else:
            app_requests = [self._apps_request("appId", chunk) for chunk in _chunks(ids, MAX_IN_VALUES)]
            app_requests += [
                self._apps_request("displayName", chunk) for chunk in _chunks(names, MAX_IN_VALUES)
            ]
            apps = await self._batched(app_requests)
        principals = await self._principal_ids([str(app["appId"]) for app in apps])
        return [_application(app, principals.get(str(app["appId"]).lower())) for app in apps]

    async def read_application(self, app_id: str) -> Application | None:
        found = await self.read_applications([app_id])
        return found[0] if found else None

    async def _principal_ids(self, app_ids: Sequence[str]) -> dict[str, str]:
        requests = [self._principals_request(chunk) for chunk in _chunks(sorted(set(app_ids)), MAX_IN_VALUES)]
        return {str(sp["appId"]).lower(): str(sp["id"]) for sp in await self._batched(requests)}

    async def read_ownership(self, principal_id: str | None = None) -> Ownership | None:
        """What the reconciler's identity owns: one paged listing of its applications
        (`GET /servicePrincipals/{id}/ownedObjects/graph.application`: object id, client id, name).

        None when a person is signed in (a delegated token, see `own_token_is_delegated`): the
        token's `oid` is then a user's, which no service principal has (Graph answers 404), and
        ownership by the deployed identity is not what decides a person's writes. With
        `principal_id`, what that service principal owns, whoever is signed in (a person checking
        the deployed identity: delegated Application.Read.All suffices, learn.microsoft.com
        graph/api/serviceprincipal-list-ownedobjects)."""
        if principal_id is None:
            if await self.own_token_is_delegated():
                return None
            principal_id = await self.own_principal_id()
        principal_id = _guid(principal_id, "service principal id")
        builder = owned_applications.GraphApplicationRequestBuilder
        query = builder.GraphApplicationRequestBuilderGetQueryParameters(
            select=["id", "appId", "displayName"], top=OWNED_PAGE_SIZE
        )
        owned = self._client.service_principals.by_service_principal_id(principal_id).owned_objects
        config = RequestConfiguration(query_parameters=query)
        info = owned.graph_application.to_get_request_information(config)
        apps = await self._batched([self._relative(info.url)])
        return Ownership(
            principal_id,
            frozenset(str(app["id"]) for app in apps),
            {
                str(app["appId"]).lower(): str(app.get("displayName") or "")
                for app in apps
                if app.get("appId")
            },
        )

    async def own_principal_id(self) -> str:
        """The object id of the principal signed in: the `oid` claim of its Graph token (the
        reconciler's service principal when it runs as its identity; a user's for a person).

        Read from the token it signs in with anyway: no request and no permission beyond its own
        (a Graph lookup by client id would need Application.Read.All and the client id, which a
        system-assigned identity does not configure)."""
        if self._principal_id is None:
            token = await self._credential.get_token(self._scope)
            self._principal_id = principal_of_token(token.token)
        return self._principal_id

    async def own_tenant_id(self) -> str | None:
        """The tenant the reconciler signs in to, and so the one it writes applications, credentials
        and role assignments in: the `tid` claim of its Graph token. Read from the token: no request.
        None when the token carries no readable `tid` (the caller then cannot check configs against it)."""
        token = await self._credential.get_token(self._scope)
        return tenant_of_token(token.token)

    async def own_token_roles(self) -> frozenset[str]:
        """The application permissions the identity holds in Graph: the `roles` claim of its Graph
        token (absent when it holds none). Read from the token it signs in with: no request."""
        token = await self._credential.get_token(self._scope)
        self._principal_id = self._principal_id or principal_of_token(token.token)
        return roles_of_token(token.token)

    async def own_token_scopes(self) -> frozenset[str]:
        """A person's delegated permissions in Graph: the `scp` claim of the token (space separated;
        absent from app-only tokens). Read from the token: no request."""
        token = await self._credential.get_token(self._scope)
        try:
            scopes = _claims_of_token(token.token).get("scp")
        except ValueError:
            return frozenset()
        return frozenset(scopes.split()) if isinstance(scopes, str) else frozenset()

    async def own_token_is_delegated(self) -> bool:
        """Whether a person is signed in (a delegated token) rather than an application or managed
        identity (an app-only token): see `token_is_delegated`. Read from the token: no request."""
        token = await self._credential.get_token(self._scope)
        return token_is_delegated(token.token)

    async def list_created_applications(self) -> dict[str, str]:
        """Client id -> display name of every application carrying the reconciler's tag: one paged
        listing (`$filter=tags/any(t:t eq '...')`, no advanced query needed; 999 per page, 1 unit each).

        Lists what the reconciler created whoever signed in: the deployed identity
        (Application.ReadWrite.OwnedBy reads every application) or a person with `az login`."""
        query = {"$select": "appId,displayName", "$top": "999"}  # no $expand: Graph's largest page
        url = _relative_url("/applications", {"$filter": _tag_filter(APPLICATION_TAG), **query}, None, ())
        return {str(app["appId"]).lower(): app.get("displayName") or "" for app in await self._batched([url])}

    async def count_applications(self) -> int:
        """How many applications the tenant holds (one request; an advanced query)."""
        info = RequestInformation(method=Method.GET)
        info.url = f"{self._base_url}/applications/$count"
        info.headers.try_add("ConsistencyLevel", "eventual")
        raw = await self._call(self._adapter.send_primitive_async(info, "bytes", None))
        return int(bytes(raw or b"0").decode().strip() or 0)

    def _apps_request(self, field: str | None, values: Sequence[str]) -> str:
        query = {
            "$select": ",".join(_APP_FIELDS),
            "$expand": "federatedIdentityCredentials",
            "$top": str(EXPANDED_PAGE_SIZE),
        }
        return _relative_url("/applications", query, field, values)

    def _principals_request(self, app_ids: Sequence[str]) -> str:
        return _relative_url("/servicePrincipals", {"$select": "id,appId", "$top": "999"}, "appId", app_ids)

    def _relative(self, url: str) -> str:
        # Graph wants URLs relative to the version root inside a batch; the SDK makes them absolute.
        return url.removeprefix(self._base_url)

    async def _batched(
        self, urls: Sequence[str], keep: Callable[[dict[str, Any]], bool] | None = None
    ) -> list[dict[str, Any]]:
        """GET these URLs in $batch requests of 20, concurrently, following each listing's next pages;
        the items `keep` accepts (all by default).

        Bodies are read as plain JSON: a bulk read holds thousands of objects, and the
        reconciler needs only a few fields of each.
        """
        items: list[dict[str, Any]] = []
        pending = list(urls)
        while pending:
            chunks = list(_chunks(pending, MAX_BATCH))
            pages = [page for chunk in await asyncio.gather(*map(self._send_batch, chunks)) for page in chunk]
            items.extend(
                item for page in pages for item in page.get("value", []) if keep is None or keep(item)
            )
            pending = [
                self._relative(page["@odata.nextLink"]) for page in pages if page.get("@odata.nextLink")
            ]
        return items

    async def _send_batch(self, urls: Sequence[str]) -> list[dict[str, Any]]:
        pending = {str(index): url for index, url in enumerate(urls)}
        done: list[dict[str, Any]] = []
        for attempt in range(BATCH_ATTEMPTS):
            last = attempt + 1 == BATCH_ATTEMPTS
            try:
                responses = await self._post_batch(pending)
            except TemporaryFailure as failure:
                # A batch of GETs is safe to send again, and the SDK does not retry a lost connection.
                if failure.code != "ConnectionError" or last:
                    raise
                await asyncio.sleep(_backoff(attempt))
                continue
            throttled: dict[str, str] = {}
            wait = 0.0
            for response in responses:
                request_id, status = str(response.get("id")), int(response.get("status", 0))
                if status == THROTTLED:
                    self._meter.record_throttled("graph")  # the $batch itself answered 200
                if status == 200:
                    done.append(response.get("body") or {})
                elif status in {429, 503, 504} and not last:
                    throttled[request_id] = pending[request_id]
                    # A 503 may come without Retry-After: then back off exponentially.
                    wait = max(wait, _retry_after(response.get("headers"), default=_backoff(attempt)))
                else:
                    raise _sub_request_failure(response)
            if not throttled:
                return done
            pending = throttled
            await asyncio.sleep(wait)
        raise TemporaryFailure("Graph kept throttling batch sub-requests", code="TooManyRequests", status=429)

    async def _post_batch(self, requests: Mapping[str, str]) -> list[dict[str, Any]]:
        """POST one JSON batch of GETs through the SDK's adapter (auth, retry, redirects) and parse it.

        msgraph-core's batch classes keep absolute URLs and cannot read JSON sub-response
        bodies (its response item reads bodies as base64), so the body is built and read here.
        """
        info = RequestInformation(method=Method.POST)
        info.url = f"{self._base_url}/$batch"
        info.headers.try_add("Content-Type", "application/json")
        info.content = json.dumps(
            {
                "requests": [
                    {"id": request_id, "method": "GET", "url": url, **_priority_headers()}
                    for request_id, url in requests.items()
                ]
            }
        ).encode()
        raw = await self._call(self._adapter.send_primitive_async(info, "bytes", None))
        responses: list[dict[str, Any]] = json.loads(raw or b"{}").get("responses", [])
        missing = set(requests) - {str(r.get("id")) for r in responses}
        if missing:
            raise TemporaryFailure(
                f"Graph's batch answer lacks requests {sorted(missing)}", code="IncompleteBatch"
            )
        return responses

    # ------------------------------------------------------------------ writes

    async def upsert_application(
        self, display_name: str, tags: Sequence[str] = (APPLICATION_TAG,)
    ) -> tuple[str, str, bool]:
        """Create the app registration the reconciler owns for this display name, or find it.

        An upsert by a unique name derived from the display name: a retried or concurrent
        create never makes a second app. `tags` say it is ours and which ADO project claimed
        it. Returns (object id, client id, created).
        """
        unique_name = application_unique_name(display_name)
        body = GraphApplication(display_name=display_name, sign_in_audience="AzureADMyOrg", tags=list(tags))
        builder = self._client.applications_with_unique_name(unique_name)
        # msgraph-sdk writes the unique name into the client's shared path parameters, so concurrent
        # upserts would all address the last name written (two configs' apps merged into one): this
        # builder keeps its own copy, taken before any other upsert can run.
        builder.path_parameters = dict(builder.path_parameters)
        # The upsert would rewrite an existing app's name and tags. An app found under this unique
        # name but tagged for another ADO project (renamed since, and its claim row lost) is not
        # ours to take: refuse before writing, one read on the rare create path.
        try:
            found = await self._call(builder.get())
        except NotFound:
            found = None
        if found is not None:
            _refuse_another_tenants(found, tags, display_name)
        config: RequestConfiguration[QueryParameters] = RequestConfiguration()
        config.headers.add("Prefer", "create-if-missing")
        upserted = await self._call(builder.patch(body, config))
        if upserted is not None and upserted.id:  # 201: created now
            return str(upserted.id), str(upserted.app_id).lower(), True
        existing = await self._call(builder.get())  # 204: it existed
        return str(existing.id), str(existing.app_id).lower(), False

    async def service_principal_id(self, app_id: str) -> str | None:
        """The object id of the application's service principal, read by its alternate key
        (`GET /servicePrincipals(appId='{appId}')`): a read by key, which shows a principal created
        moments ago sooner than the `$filter` listings do. None when Graph answers 404."""
        builder = self._client.service_principals_with_app_id(_guid(app_id, "application client id"))
        # The SDK writes the key into the client's shared path parameters: keep this builder's own.
        builder.path_parameters = dict(builder.path_parameters)
        query = builder.ServicePrincipalsWithAppIdRequestBuilderGetQueryParameters(select=["id"])
        try:
            found = await self._call(builder.get(RequestConfiguration(query_parameters=query)))
        except NotFound:
            return None
        return str(found.id) if found is not None and found.id else None

    async def create_service_principal(self, app_id: str) -> str:
        created = await self._call(self._client.service_principals.post(ServicePrincipal(app_id=app_id)))
        return str(created.id)

    async def create_credential(
        self, object_id: str, name: str, issuer: str, subject: str, description: str
    ) -> FederatedCredential:
        body = FederatedIdentityCredential(
            name=name,
            issuer=issuer,
            subject=subject,
            audiences=[TOKEN_EXCHANGE_AUDIENCE],
            description=description,
        )
        credentials = self._credentials_of(object_id)
        created = await self._call(credentials.post(body))
        return _credential(created)

    async def update_credential(
        self, object_id: str, credential_id: str, issuer: str, subject: str, description: str
    ) -> None:
        body = FederatedIdentityCredential(
            issuer=issuer, subject=subject, audiences=[TOKEN_EXCHANGE_AUDIENCE], description=description
        )
        credentials = self._credentials_of(object_id)
        await self._call(
            credentials.by_federated_identity_credential_id(_guid(credential_id, "credential id")).patch(body)
        )

    async def delete_credential(self, object_id: str, credential_id: str) -> None:
        credentials = self._credentials_of(object_id)
        try:
            await self._call(
                credentials.by_federated_identity_credential_id(
                    _guid(credential_id, "credential id")
                ).delete()
            )
        except NotFound:
            return  # already gone: the goal is reached

    async def read_credentials(self, object_id: str) -> list[FederatedCredential]:
        credentials = self._credentials_of(object_id)
        page = await self._call(credentials.get())
        return [_credential(c) for c in (page.value if page else None) or []]

    async def add_application_owner(self, object_id: str, principal_id: str) -> bool:
        """Make a directory object (the deployed identity's service principal) an owner of an
        application: `POST /applications/{id}/owners/$ref` with `{"@odata.id": ".../directoryObjects/{id}"}`
        (learn.microsoft.com graph/api/application-post-owners). True when added; False when it was an
        owner already, so a retry after a lost response is harmless.

        Graph answers an owner already there with a 400 whose wording it does not document: the
        known text ("One or more added object references already exist") decides at once; any other
        400 is decided by re-reading the application's owners (`GET /applications/{id}/owners`,
        learn.microsoft.com graph/api/application-list-owners), sent only on that path."""
        owner = _guid(principal_id, "owner principal id")
        reference = ReferenceCreate(odata_id=f"{self._base_url}/directoryObjects/{owner}")
        application = self._client.applications.by_application_id(_guid(object_id, "application object id"))
        try:
            await self._call(application.owners.ref.post(reference))
        except PermanentFailure as failure:
            if failure.status != 400:
                raise
            if ALREADY_REFERENCED in failure.message:
                return False
            try:
                owners = await self._owner_ids(object_id)
            except PermanentFailure as unread:  # the 400 stands; a temporary failure is retried later
                raise failure from unread
            if owner.lower() in owners:
                return False
            raise
        return True

    async def _owner_ids(self, object_id: str) -> set[str]:
        """The object ids of an application's owners, every page (ids only: `$select=id`)."""
        owners = self._client.applications.by_application_id(_guid(object_id, "application object id")).owners
        query = owners_builder.OwnersRequestBuilder.OwnersRequestBuilderGetQueryParameters(select=["id"])
        page = await self._call(owners.get(RequestConfiguration(query_parameters=query)))
        found: set[str] = set()
        while page is not None:
            found.update(str(item.id).lower() for item in page.value or [] if item.id)
            if not page.odata_next_link:
                break
            page = await self._call(owners.with_url(page.odata_next_link).get())
        return found

    def _credentials_of(
        self, object_id: str
    ) -> credentials_builder.FederatedIdentityCredentialsRequestBuilder:
        application = self._client.applications.by_application_id(_guid(object_id, "application object id"))
        return application.federated_identity_credentials

    # ------------------------------------------------------------------ errors

    async def _call(self, request: Awaitable[Any]) -> Any:
        async with self._limit:
            try:
                return await request
            except ODataError as error:
                raise _odata_failure(error) from error
            except APIError as error:  # an error without a Graph error body (the SDK maps none for $batch)
                status = error.response_status_code or 0
                raise _failure(status, "", f"Graph answered {status}: {error.message}", 5.0) from error
            except httpx.TransportError as error:
                raise TemporaryFailure(
                    f"Graph connection failed: {error!r}", code="ConnectionError"
                ) from error


async def _send_priority(request: httpx.Request) -> None:
    priority = throttle_priority.get()
    if priority:
        request.headers["x-ms-throttle-priority"] = priority


def _priority_headers() -> dict[str, dict[str, str]]:
    """A batch's requests are throttled one by one: each carries the priority too."""
    priority = throttle_priority.get()
    return {"headers": {"x-ms-throttle-priority": priority}} if priority else {}


def _guid(value: str, field: str) -> str:
    """The SDK escapes path parameters but leaves '..'; ids are GUIDs."""
    return str(Guid(value, field))


def principal_of_token(token: str) -> str:
    """The `oid` claim of an Entra access token (a JWT): the object id of the principal it was issued to.

    Only documented claims are read, and only to describe the reconciler itself; nothing is
    trusted on them (Graph checks the token, not us)."""
    try:
        return str(Guid(_claims_of_token(token)["oid"], "oid"))
    except (KeyError, TypeError, ValueError) as error:  # ValueError covers bad GUIDs
        raise PermanentFailure(
            "the Graph access token carries no readable `oid` claim, so the reconciler cannot tell which "
            "applications it owns",
            code="UnreadableToken",
        ) from error


def tenant_of_token(token: str) -> str | None:
    """The `tid` claim of an Entra access token: the tenant the principal signed in to, lower case.

    learn.microsoft.com/entra/identity-platform/access-token-claims-reference: `tid` "represents
    the tenant that the user is signing in to" (for an app-only token, the tenant of the service
    principal). None when the token is not a JWT or the claim is missing or not a GUID."""
    try:
        return str(Guid(_claims_of_token(token)["tid"], "tid"))
    except (KeyError, TypeError, ValueError):  # ValueError covers bad JWTs and bad GUIDs
        return None


def roles_of_token(token: str) -> frozenset[str]:
    """The `roles` claim of an Entra access token: the app roles (application permissions) it carries."""
    try:
        roles = _claims_of_token(token).get("roles") or []
    except ValueError:
        return frozenset()
    return frozenset(str(role) for role in roles) if isinstance(roles, list) else frozenset()


def token_is_delegated(token: str) -> bool:
    """Whether an Entra access token is delegated (a person signed in, as with `az login`) rather
    than app-only (a managed identity or service principal acting as itself).

    learn.microsoft.com/entra/identity-platform/optional-claims-reference: `idtyp` "is the most
    accurate way for an API to determine if a token is an app token or an app+user token" (`app`
    for app-only; Microsoft Graph tokens carry it, `user` for a person).
    learn.microsoft.com/entra/identity-platform/access-token-claims-reference: `scp` (delegated
    permissions) is "only included for user tokens"; `roles` carries an app-only token's
    application permissions. So `idtyp` decides when present, else the presence of `scp`.
    A token that cannot be read counts as app-only: the reads that need a service principal then
    fail with their own clear error."""
    try:
        claims = _claims_of_token(token)
    except ValueError:
        return False
    kind = claims.get("idtyp")
    if isinstance(kind, str) and kind:
        return kind.lower() == "user"
    return bool(claims.get("scp"))


def _claims_of_token(token: str) -> dict[str, Any]:
    """The payload of a JWT, unverified. Raises ValueError when it is not one."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError) as error:  # ValueError covers bad base64 and JSON
        raise ValueError("not a JWT") from error
    if not isinstance(claims, dict):
        raise ValueError("not a JWT")
    return claims


def _refuse_another_tenants(found: GraphApplication, tags: Sequence[str], display_name: str) -> None:
    owner, wanted = tenant_of_tags(found.tags or []), tenant_of_tags(tags)
    if APPLICATION_TAG not in (found.tags or []) or (owner is not None and owner != wanted):
        whose = f"ADO project {owner}" if owner else "someone else (it has no reconciler tag)"
        raise PermanentFailure(
            f"the application for display name {display_name!r} exists as {found.app_id} "
            f"(now named {found.display_name!r}) and belongs to {whose}: not taken over",
            code="ApplicationClaimed",
        )


def application_unique_name(display_name: str) -> str:
    """Entra's alternate key for the app the reconciler creates under this display name."""
    return "wif-reconciler-" + hashlib.sha256(display_name.encode()).hexdigest()[:32]


def _relative_url(path: str, query: Mapping[str, str], field: str | None, values: Sequence[str]) -> str:
    """A bulk read's URL relative to the version root, as a $batch wants it. Built here rather than
    by the SDK's request builders, whose URI templates percent-encode one character per Python call
    (a third of a 50,000-config sweep's CPU)."""
    if field:
        query = {"$filter": _in_filter(field, values), **query}
    return f"{path}?{urlencode(query, quote_via=quote, safe='$,()')}"


def _tag_filter(tag: str) -> str:
    return "tags/any(t:t eq '" + tag.replace("'", "''") + "')"


def _in_filter(field: str, values: Sequence[str]) -> str:
    quoted = ", ".join("'" + value.replace("'", "''") + "'" for value in values)
    return f"{field} in ({quoted})"


def _chunks(items: Sequence[_T], size: int) -> Iterable[Sequence[_T]]:
    return (items[start : start + size] for start in range(0, len(items), size))


def _application(app: dict[str, Any], principal_id: str | None) -> Application:
    return Application(
        object_id=str(app["id"]),
        app_id=str(app["appId"]).lower(),
        display_name=app.get("displayName") or "",
        credentials=tuple(_credential_from_json(c) for c in app.get("federatedIdentityCredentials") or []),
        service_principal_id=principal_id,
        tags=frozenset(app.get("tags") or []),
    )


def _credential_from_json(credential: dict[str, Any]) -> FederatedCredential:
    return FederatedCredential(
        id=str(credential["id"]),
        name=credential.get("name") or "",
        issuer=credential.get("issuer") or "",
        subject=credential.get("subject") or "",
        audiences=tuple(credential.get("audiences") or ()),
        description=credential.get("description") or "",
    )


def _credential(credential: FederatedIdentityCredential) -> FederatedCredential:
    return FederatedCredential(
        id=str(credential.id),
        name=credential.name or "",
        issuer=credential.issuer or "",
        subject=credential.subject or "",
        audiences=tuple(credential.audiences or ()),
        description=credential.description or "",
    )


def _retry_after(headers: Mapping[str, str] | None, default: float = 1.0) -> float:
    """Graph's Retry-After, at most two minutes (a batch sub-request is retried while the caller waits)."""
    value = next((v for k, v in (headers or {}).items() if k.lower() == "retry-after"), None)
    return min(retry_after_seconds(value, default=default), 120.0)


def _backoff(attempt: int) -> float:
    """Seconds to wait before retry `attempt + 1` when Graph names no delay: 0.5, 1, 2, ..."""
    return 0.5 * 2.0**attempt


def _odata_failure(error: ODataError) -> Failure:
    status = error.response_status_code or 0
    code = error.error.code if error.error and error.error.code else ""
    message = error.error.message if error.error and error.error.message else str(error)
    text = f"Graph answered {status} {code}: {message}"
    return _failure(status, code, text, _retry_after(error.response_headers))


def _sub_request_failure(response: Mapping[str, Any]) -> Failure:
    status = int(response.get("status", 0))
    body = response.get("body")
    error = body.get("error", {}) if isinstance(body, dict) else {}
    code, message = str(error.get("code", "")), str(error.get("message", str(body)[:300]))
    return _failure(status, code, f"Graph answered {status} {code}: {message}", 1.0)


def _failure(status: int, code: str, text: str, retry_after: float) -> Failure:
    """Graph's own case first (a clash with an existing object), then the mapping every adapter shares."""
    if status == 409 or code in _CONFLICT_CODES:
        return Conflict(text, code=code, status=status)
    return failure_for_status(status, text, code=code, retry_after=retry_after)
