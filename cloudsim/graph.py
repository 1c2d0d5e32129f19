"""Microsoft Graph v1.0: applications, service principals, federated identity credentials, $batch.

Shapes follow the Applications OpenAPI slice of msgraph-sdk-powershell; rules and
error codes follow shared/design/azure-contracts.md.
"""

from __future__ import annotations

import asyncio
import operator
import re
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit

from cloudsim.api import EMPTY, Api, ApiError, Call, Reply, RequestCounters, Route
from cloudsim.lookups import ByAppId
from cloudsim.paging import Listings
from cloudsim.rights import (
    APPLICATION_ADMIN_ROLES,
    DIRECTORY_READ_ROLES,
    DIRECTORY_READ_SCOPES,
    GRAPH_READ_ROLES,
    GRAPH_READ_SCOPES,
    GRAPH_WRITE_ROLES,
    GRAPH_WRITE_SCOPES,
    OWNER_ADD_ROLES,
    OWNER_ADD_SCOPES,
)
from cloudsim.state import Application, FederatedCredential, JsonObject, ServicePrincipal, World, iso, new_id
from cloudsim.tokens import GRAPH_AUDIENCES, caller_of, roles_of, scopes_of

T = TypeVar("T")

MAX_FICS_PER_APP = 20
MAX_BATCH = 20
DEFAULT_PAGE = 100
MAX_PAGE = 999
MAX_EXPANDED_PAGE = 100  # with $expand Graph caps a page at 100 objects whatever $top asks
_FIC_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{2,119}")
_APP = r"/v1\.0/applications(?:/(?P<id>[^/(]+)|\(appId='(?P<app_id>[^']+)'\))"
_APP_BY_UNIQUE_NAME = r"/v1\.0/applications\(uniqueName='(?P<unique_name>[^']+)'\)"
MAX_IN_VALUES = 15  # Graph limits an `in` clause to 15 values
_FICS = _APP + r"/federatedIdentityCredentials"
_APP_OWNER_REF = _APP + r"/owners/\$ref"
_APP_OWNERS = _APP + r"/owners"
# The reference an owners add names: `{"@odata.id": "https://graph.microsoft.com/v1.0/directoryObjects/{id}"}`.
_DIRECTORY_OBJECT_REF = re.compile(r"https://[^/]+/v1\.0/directoryObjects/(?P<id>[0-9a-fA-F-]{36})")
_FIC = _FICS + r"(?:/(?P<fic>[^/(]+)|\(name='(?P<fic_name>[^']+)'\))"
_SP = r"/v1\.0/servicePrincipals(?:/(?P<id>[^/(]+)|\(appId='(?P<app_id>[^']+)'\))"
# What a principal owns: every directory object, or only applications (the type cast, which
# Graph accepts by its full name or by the `graph.` alias the msgraph SDKs send).
_OWNED = _SP + r"/ownedObjects(?P<cast>/(?:microsoft\.)?graph\.application)?"


def graph_error(status: int, code: str, message: str) -> Reply:
    inner = {
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
        "request-id": str(uuid.uuid4()),
        "client-request-id": str(uuid.uuid4()),
    }
    return Reply(status, {"error": {"code": code, "message": message, "innerError": inner}})


def _not_found(key: str) -> ApiError:
    return ApiError(
        404,
        "Request_ResourceNotFound",
        f"Resource '{key}' does not exist or one of its queried reference-property objects are not present.",
    )


def _not_owner() -> ApiError:
    """Application.ReadWrite.OwnedBy: writes to an application the caller does not own."""
    return ApiError(403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")


def _bad_value(prop: str, resource: str = "FederatedIdentityCredential") -> ApiError:
    return ApiError(
        400, "Request_BadRequest", f"Invalid value specified for property '{prop}' of resource '{resource}'."
    )


def request_cost(call: Call, route: Route) -> int:
    """Resource units per the identity throttling rules: listing applications 2, else 1; $expand +1,
    $select -1."""
    if route.operation == "batch":
        return 0  # a batch is charged through its sub-requests
    cost = 2 if route.operation == "applications.list" else 1
    if "$expand" in call.query:
        cost += 1
    if "$select" in call.query:
        cost -= 1
    return max(1, cost)  # the docs never make a request free


# ---- rendering -------------------------------------------------------------------------------


def render_fic(fic: FederatedCredential) -> JsonObject:
    return {
        "id": fic.id,
        "name": fic.name,
        "issuer": fic.issuer,
        "subject": fic.subject,
        "audiences": list(fic.audiences),
        "description": fic.description,
    }


def render_app(app: Application, expand_fics: bool = False) -> JsonObject:
    body: JsonObject = {
        "id": app.id,
        "deletedDateTime": None,
        "appId": app.app_id,
        "displayName": app.display_name,
        "createdDateTime": iso(app.created_at),
        "signInAudience": "AzureADMyOrg",
        "tags": list(app.tags),
        "uniqueName": app.unique_name,
    }
    if expand_fics:
        body["federatedIdentityCredentials"] = [render_fic(f) for f in app.federated_credentials]
    return body


def _tags(body: JsonObject) -> list[str]:
    tags = body.get("tags") or []
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise _bad_value("tags", "Application")
    return list(tags)


def render_sp(sp: ServicePrincipal) -> JsonObject:
    return {
        "id": sp.id,
        "deletedDateTime": None,
        "accountEnabled": True,
        "appId": sp.app_id,
        "displayName": sp.display_name,
        "servicePrincipalType": "Application",
    }


def _render_owned(item: Application | ServicePrincipal) -> JsonObject:
    """A directory object in a mixed collection says its type, so clients can tell them apart."""
    if isinstance(item, Application):
        return {"@odata.type": "#microsoft.graph.application", **render_app(item)}
    return {"@odata.type": "#microsoft.graph.servicePrincipal", **render_sp(item)}


def _select(body: JsonObject, call: Call) -> JsonObject:
    wanted = call.query.get("$select")
    if not wanted:
        return body
    keep = {name.strip() for name in wanted.split(",")} | {"federatedIdentityCredentials", "@odata.type"}
    return {key: value for key, value in body.items() if key in keep}


# ---- $filter ----------------------------------------------------------------------------------

_CLAUSE = re.compile(
    r"\s*(?:(?P<prop>\w+)\s+eq\s+'(?P<value>(?:[^']|'')*)'"
    r"|(?P<in_prop>\w+)\s+in\s+\((?P<values>[^)]*)\)"
    r"|startswith\(\s*(?P<sw_prop>\w+)\s*,\s*'(?P<prefix>(?:[^']|'')*)'\s*\)"
    # A lambda on a collection: `tags/any(t:t eq 'x')`, any range variable name.
    r"|(?P<any_prop>\w+)/any\(\s*(?P<var>\w+)\s*:\s*(?P=var)\s+eq\s+'(?P<member>(?:[^']|'')*)'\s*\))\s*",
    re.IGNORECASE,
)


def parse_filter(
    text: str, allowed: dict[str, str], resource: str, collections: dict[str, str] | None = None
) -> Callable[[object], bool]:
    """A predicate for `prop eq 'v'`, `prop in ('a','b')`, `startswith(prop,'p')` and, on the
    collections named in `collections`, `prop/any(v:v eq 'x')`, joined by `and`.

    It reads the model objects' attributes (named in `allowed`), so a list filters before it
    renders anything: large tenants stay fast.
    """
    tests: list[Callable[[object], bool]] = []
    for clause in re.split(r"\s+and\s+", text.strip(), flags=re.IGNORECASE):
        found = _CLAUSE.fullmatch(clause)
        if found and found["any_prop"]:
            prop, names = found["any_prop"], collections or {}
        else:
            prop, names = found and (found["prop"] or found["in_prop"] or found["sw_prop"]), allowed
        if not found or not prop or prop.lower() not in names:
            raise ApiError(
                400,
                "Request_UnsupportedQuery",
                f"Unsupported or invalid query filter clause specified for property '{prop or clause}' "
                f"of resource '{resource}'.",
            )
        tests.append(_clause_test(found, names[prop.lower()]))
    if len(tests) == 1:
        return tests[0]
    return lambda item: all(test(item) for test in tests)


def _clause_test(found: re.Match[str], attribute: str) -> Callable[[object], bool]:
    read = operator.attrgetter(attribute)
    if found["member"] is not None:
        member = found["member"].replace("''", "'")
        return lambda item: member in read(item)
    if found["value"] is not None:
        value = found["value"].replace("''", "'")
        return lambda item: read(item) == value
    if found["values"] is not None:
        values = {v.strip().strip("'").replace("''", "'") for v in found["values"].split(",")}
        if len(values) > MAX_IN_VALUES:
            raise ApiError(
                400,
                "Request_UnsupportedQuery",
                f"Too many child clauses specified in search filter expression containing 'OR' operators: "
                f"{len(values)}. Max allowed: {MAX_IN_VALUES}.",
            )
        return lambda item: read(item) in values
    prefix = found["prefix"].replace("''", "'").lower()
    return lambda item: str(read(item)).lower().startswith(prefix)


# Filterable properties: lower-cased name in $filter -> model attribute.
_DIRECTORY_FILTERS = {"appid": "app_id", "displayname": "display_name", "id": "id"}
_FIC_FILTERS = {"name": "name", "subject": "subject", "issuer": "issuer"}
# Collections a lambda (`any`) may filter on: an application's tags (only them: see docs/simulator.md).
_APP_COLLECTION_FILTERS = {"tags": "tags"}


_CLIENT_IDS = re.compile(r"\s*appId\s+(?:eq\s+'(?P<one>[^']*)'|in\s+\((?P<many>[^)]*)\))\s*", re.IGNORECASE)


def _client_ids(text: str) -> set[str] | None:
    """The client ids of a filter that is one `appId eq` or `appId in` clause (None for any other)."""
    found = _CLIENT_IDS.fullmatch(text)
    if found is None:
        return None
    if found["one"] is not None:
        return {found["one"]}
    return {v.strip().strip("'").replace("''", "'") for v in found["many"].split(",")}


def filtered(
    call: Call,
    items: Iterable[T],
    allowed: dict[str, str],
    resource: str,
    keep: Callable[[T], bool] | None = None,
    collections: dict[str, str] | None = None,
) -> list[T]:
    """The items the call's $filter accepts (all without one) and `keep` too; the filter is tested
    first, as it rejects most items of a large tenant at the lowest cost."""
    query = call.query.get("$filter")
    test = parse_filter(query, allowed, resource, collections) if query is not None else None
    return [item for item in items if (test is None or test(item)) and (keep is None or keep(item))]


# ---- paging -----------------------------------------------------------------------------------


def page_size(call: Call) -> int:
    top_text = call.query.get("$top", str(DEFAULT_PAGE))
    if not top_text.isdigit() or not 1 <= int(top_text) <= MAX_PAGE:
        raise ApiError(
            400,
            "Request_BadRequest",
            f"Invalid page size specified: '{top_text}'. Must be between 1 and 999 inclusive.",
        )
    return min(int(top_text), MAX_EXPANDED_PAGE) if "$expand" in call.query else int(top_text)


def collection(
    call: Call, listings: Listings, items: Callable[[], Sequence[T]], render: Callable[[T], JsonObject]
) -> Reply:
    """One page of `items` (computed for the first page only), rendered (only the page is rendered)."""
    page, token = listings.page(call.query.get("$skiptoken", ""), items, page_size(call))
    body: JsonObject = {"value": [_select(render(item), call) for item in page]}
    if token:
        query = {**call.query, "$skiptoken": token}
        body["@odata.nextLink"] = f"{call.base_url}{call.path}?{urlencode(query)}"
    return Reply(200, body)


# ---- the API ----------------------------------------------------------------------------------


class Graph:
    def __init__(self, world: World, counters: RequestCounters) -> None:
        self.world = world
        self.api = Api("graph", world, counters, graph_error, GRAPH_AUDIENCES, cost=request_cost)
        self.api.reports_resource_units = True
        self.api.precondition = self._check_permission
        self._busy_apps: set[str] = set()
        self._listings = Listings()
        self._by_app_id, self._sps_by_app_id = ByAppId(), ByAppId()
        add = self.api.routes.add
        add("GET", r"/v1\.0/applications", "applications.list", self.list_applications)
        add("GET", r"/v1\.0/applications/\$count", "applications.count", self.count_applications)
        add("POST", r"/v1\.0/applications", "applications.create", self.create_application)
        add("GET", _FICS, "fics.list", self.list_fics)
        add("POST", _FICS, "fics.create", self.create_fic)
        add("GET", _FIC, "fics.get", self.get_fic)
        add("PATCH", _FIC, "fics.update", self.update_fic)
        add("DELETE", _FIC, "fics.delete", self.delete_fic)
        add("POST", _APP_OWNER_REF, "applications.owners.add", self.add_application_owner)
        add("GET", _APP_OWNERS, "applications.owners.list", self.list_application_owners)
        add("GET", _APP_BY_UNIQUE_NAME, "applications.getByUniqueName", self.get_by_unique_name)
        add("PATCH", _APP_BY_UNIQUE_NAME, "applications.upsert", self.upsert_application)
        add("GET", _APP, "applications.get", self.get_application)
        add("DELETE", _APP, "applications.delete", self.delete_application)
        add("GET", r"/v1\.0/servicePrincipals", "servicePrincipals.list", self.list_sps)
        add("POST", r"/v1\.0/servicePrincipals", "servicePrincipals.create", self.create_sp)
        add("GET", _SP, "servicePrincipals.get", self.get_sp)
        add("GET", _OWNED, "servicePrincipals.ownedObjects", self.list_owned_objects)
        add("POST", r"/v1\.0/\$batch", "batch", self.batch)

    @staticmethod
    def _check_permission(call: Call, route: Route) -> None:
        """The application permissions in the token's `roles` claim: reading applications and service
        principals needs one of GRAPH_READ_ROLES, writing them one of GRAPH_WRITE_ROLES (for a person's
        token, the delegated permissions in its `scp` claim: GRAPH_READ_SCOPES, GRAPH_WRITE_SCOPES); without,
        Graph answers 403 `Authorization_RequestDenied` (each request of a $batch on its own)."""
        if route.operation == "batch":
            return
        authorization = call.headers.get("Authorization")
        scopes = scopes_of(authorization)
        if scopes is not None:  # a person: delegated permissions, never the app's roles
            held, needed = scopes, GRAPH_WRITE_SCOPES if route.write else GRAPH_READ_SCOPES
        else:
            held, needed = roles_of(authorization), GRAPH_WRITE_ROLES if route.write else GRAPH_READ_ROLES
        if not held & needed:
            raise ApiError(
                403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation."
            )

    # applications

    def _app(self, match: re.Match[str]) -> Application:
        """The application the path addresses, for a read or a write. One younger than the fault
        `read_lag_s` is missing (404), to writes too: Graph may route a write to a replica that has
        not seen the application yet (the credential POST or owner add right after creating it)."""
        object_id, app_id = match["id"], match["app_id"]
        app = self.world.application(object_id) if object_id else self.world.application_by_app_id(app_id)
        if app is None or not self.api.readable(app.created_at):
            raise _not_found(object_id or app_id)
        return app

    def _require_owner(self, call: Call, owners: list[str]) -> str:
        """The caller's object id, when it owns the object or is a person holding an application
        administrator role; else Graph's 403 (OwnedBy for an app, the user's own rights for a person)."""
        authorization = call.headers.get("Authorization")
        caller = caller_of(authorization)
        if caller is None:
            raise _not_owner()
        person = self.world.person(caller) if scopes_of(authorization) is not None else None
        if caller not in owners and not (person and APPLICATION_ADMIN_ROLES & set(person.directory_roles)):
            raise _not_owner()
        return caller

    def list_applications(self, call: Call, _match: re.Match[str]) -> Reply:
        expand = "federatedidentitycredentials" in call.query.get("$expand", "").lower()
        return collection(
            call,
            self._listings,
            lambda: filtered(
                call,
                self._app_candidates(call),
                _DIRECTORY_FILTERS,
                "Application",
                self._visible,
                _APP_COLLECTION_FILTERS,
            ),
            lambda app: render_app(app, expand),
        )

    def _app_candidates(self, call: Call) -> Sequence[Application]:
        """The applications a filter on client ids alone can match, from the index (the filter is
        still applied to them); every one for any other query."""
        ids = _client_ids(call.query.get("$filter", ""))
        found = None if ids is None else self._by_app_id.find(self.world.applications, ids)
        return self.world.applications if found is None else found

    def _sp_candidates(self, call: Call) -> Sequence[ServicePrincipal]:
        ids = _client_ids(call.query.get("$filter", ""))
        found = None if ids is None else self._sps_by_app_id.find(self.world.service_principals, ids)
        return self.world.service_principals if found is None else found

    def _visible(self, item: Application | ServicePrincipal | FederatedCredential) -> bool:
        return self.api.visible(item.created_at)

    def count_applications(self, call: Call, _match: re.Match[str]) -> Reply:
        """`GET /applications/$count`: an advanced query, so Graph wants `ConsistencyLevel: eventual`."""
        if call.headers.get("ConsistencyLevel", "").lower() != "eventual":
            raise ApiError(
                400,
                "Request_BadRequest",
                "Count is not currently supported without the ConsistencyLevel: eventual header.",
            )
        count = len(filtered(call, self.world.applications, _DIRECTORY_FILTERS, "Application", self._visible))
        return Reply(200, raw=str(count).encode(), headers={"Content-Type": "text/plain"})

    def get_application(self, call: Call, match: re.Match[str]) -> Reply:
        expand = "federatedidentitycredentials" in call.query.get("$expand", "").lower()
        app = self._app(match)
        return Reply(200, _select(render_app(app, expand), call))

    def create_application(self, call: Call, _match: re.Match[str]) -> Reply:
        body = call.body if isinstance(call.body, dict) else {}
        name = body.get("displayName")
        if not isinstance(name, str) or not name:
            raise _bad_value("displayName", "Application")
        app = Application(
            id=new_id(), app_id=new_id(), display_name=name, tags=_tags(body), owners=self._creator(call)
        )
        self.world.applications.append(app)
        return Reply(201, render_app(app))

    def get_by_unique_name(self, call: Call, match: re.Match[str]) -> Reply:
        app = self.world.application_by_unique_name(match["unique_name"])
        if app is None or not self.api.readable(app.created_at):
            raise _not_found(match["unique_name"])
        return Reply(200, _select(render_app(app), call))

    def upsert_application(self, call: Call, match: re.Match[str]) -> Reply:
        """PATCH /applications(uniqueName='x'): with `Prefer: create-if-missing`, 201 and the new app
        when none has that unique name, else 204 after updating it; without it, 404 when missing."""
        body = call.body if isinstance(call.body, dict) else {}
        unique_name = match["unique_name"]
        app = self.world.application_by_unique_name(unique_name)
        if app is not None:
            self._require_owner(call, app.owners)
            app.display_name = str(body.get("displayName") or app.display_name)
            app.tags = _tags(body) if "tags" in body else app.tags
            return Reply(204)
        if "create-if-missing" not in call.headers.get("Prefer", "").lower():
            raise _not_found(unique_name)
        name = body.get("displayName")
        if not isinstance(name, str) or not name:
            raise _bad_value("displayName", "Application")
        app = Application(
            id=new_id(),
            app_id=new_id(),
            display_name=name,
            tags=_tags(body),
            unique_name=unique_name,
            owners=self._creator(call),
        )
        self.world.applications.append(app)
        return Reply(201, render_app(app))

    def delete_application(self, call: Call, match: re.Match[str]) -> Reply:
        app = self._app(match)
        self._require_owner(call, app.owners)
        self.world.applications.remove(app)
        return Reply(204)

    def add_application_owner(self, call: Call, match: re.Match[str]) -> Reply:
        """`POST /applications/{id}/owners/$ref` (learn.microsoft.com graph/api/application-post-owners):
        204. An app needs Application.ReadWrite.All (OwnedBy "isn't sufficient to add another owner")
        and Directory.Read.All; a person needs Application.ReadWrite.All and Directory.Read.All
        delegated (or Directory.ReadWrite.All / Directory.AccessAsUser.All), and to own the application
        or hold an application administrator role. 404 for an unknown application or directory object,
        400 for a malformed reference or an owner already there."""
        app = self._app(match)
        authorization = call.headers.get("Authorization")
        scopes = scopes_of(authorization)
        if scopes is None:
            roles = roles_of(authorization)
            if not (roles & OWNER_ADD_ROLES and roles & DIRECTORY_READ_ROLES):
                raise _not_owner()
        else:
            if not (scopes & OWNER_ADD_SCOPES and scopes & DIRECTORY_READ_SCOPES):
                raise _not_owner()
            self._require_owner(call, app.owners)
        body = call.body if isinstance(call.body, dict) else {}
        found = _DIRECTORY_OBJECT_REF.fullmatch(str(body.get("@odata.id", "")))
        if found is None:
            raise ApiError(400, "Request_BadRequest", "Invalid object identifier '@odata.id'.")
        owner = found["id"].lower()
        if not self._is_directory_object(owner):
            raise _not_found(owner)
        if owner in app.owners:
            raise ApiError(400, "Request_BadRequest", self.world.settings.graph_duplicate_owner_message)
        app.owners.append(owner)
        return Reply(204)

    def list_application_owners(self, call: Call, match: re.Match[str]) -> Reply:
        """`GET /applications/{id}/owners` (learn.microsoft.com graph/api/application-list-owners): 200
        and a page of directoryObject objects, each with its `@odata.type`. The read permissions of
        every application read suffice (Application.Read.All up to Directory.ReadWrite.All; OwnedBy for
        an app), so the route needs no check of its own. A service principal is rendered whole; a
        person or the managed identity only by type and id, as Graph returns a member "with limited
        information" to a caller without the right to read its type (the simulator models no user
        read right). Owners take effect at once, as for ownedObjects."""
        app = self._app(match)
        return collection(call, self._listings, lambda: list(app.owners), self._render_owner)

    def _render_owner(self, object_id: str) -> JsonObject:
        principal = next((s for s in self.world.service_principals if s.id == object_id), None)
        if principal is not None:
            return {"@odata.type": "#microsoft.graph.servicePrincipal", **render_sp(principal)}
        kind = "user" if self.world.person(object_id) is not None else "servicePrincipal"
        return {"@odata.type": f"#microsoft.graph.{kind}", "id": object_id}

    def _is_directory_object(self, object_id: str) -> bool:
        """An application, service principal or person of the world, or its managed identity."""
        world = self.world
        return (
            object_id == world.caller_object_id
            or world.person(object_id) is not None
            or any(s.id == object_id for s in world.service_principals)
            or world.application(object_id) is not None
        )

    # service principals

    def list_sps(self, call: Call, _match: re.Match[str]) -> Reply:
        return collection(
            call,
            self._listings,
            lambda: filtered(
                call, self._sp_candidates(call), _DIRECTORY_FILTERS, "ServicePrincipal", self._visible
            ),
            render_sp,
        )

    def get_sp(self, call: Call, match: re.Match[str]) -> Reply:
        object_id, app_id = match["id"], match["app_id"]
        found = next(
            (
                s
                for s in self.world.service_principals
                if (s.id == object_id if object_id else s.app_id == app_id)
            ),
            None,
        )
        if found is None or not self.api.readable(found.created_at):
            raise _not_found(object_id or app_id)
        return Reply(200, _select(render_sp(found), call))

    def create_sp(self, call: Call, _match: re.Match[str]) -> Reply:
        body = call.body if isinstance(call.body, dict) else {}
        app = self.world.application_by_app_id(str(body.get("appId", "")))
        # An application younger than `read_lag_s` is not there yet for this write either (Graph's
        # replication: azure-cli retries `az ad sp create` on this answer for that reason).
        if app is None or not self.api.readable(app.created_at):
            raise ApiError(
                400,
                "Request_BadRequest",
                f"The appId '{body.get('appId')}' of the service principal does not reference a valid "
                "application object.",
            )
        caller = self._require_owner(call, app.owners)
        if any(s.app_id == app.app_id for s in self.world.service_principals):
            raise ApiError(
                409,
                "Request_MultipleObjectsWithSameKeyValue",
                "The service principal for this appId already exists.",
            )
        sp = ServicePrincipal(id=new_id(), app_id=app.app_id, display_name=app.display_name, owners=[caller])
        self.world.service_principals.append(sp)
        return Reply(201, render_sp(sp))

    def list_owned_objects(self, call: Call, match: re.Match[str]) -> Reply:
        """`GET /servicePrincipals/{id}/ownedObjects[/microsoft.graph.application]`: what it owns, paged.

        The caller's own principal is always known (the simulator issues its tokens); the cast
        keeps only applications. Owners take effect at once: no list lag is modelled here.
        """
        object_id, app_id = match["id"], match["app_id"]
        principal = next(
            (s for s in self.world.service_principals if s.id == object_id or s.app_id == app_id), None
        )
        owner = principal.id if principal else object_id
        if owner is None or (principal is None and owner != self.world.caller_object_id):
            raise _not_found(object_id or app_id)

        def owned() -> list[Application | ServicePrincipal]:
            found: list[Application | ServicePrincipal] = [
                app for app in self.world.applications if owner in app.owners
            ]
            if not match["cast"]:
                found += [s for s in self.world.service_principals if owner in s.owners]
            return filtered(call, found, _DIRECTORY_FILTERS, "DirectoryObject")

        return collection(call, self._listings, owned, _render_owned)

    def _creator(self, call: Call) -> list[str]:
        """Who owns what this call creates: its caller (Graph makes the creating app an owner)."""
        caller = caller_of(call.headers.get("Authorization"))
        return [caller] if caller else []

    # federated identity credentials

    def list_fics(self, call: Call, match: re.Match[str]) -> Reply:
        app = self._app(match)
        fics = app.federated_credentials
        return collection(
            call,
            self._listings,
            lambda: filtered(call, fics, _FIC_FILTERS, "FederatedIdentityCredential", self._visible),
            render_fic,
        )

    def _fic(self, app: Application, match: re.Match[str]) -> FederatedCredential | None:
        if match["fic_name"] is not None:
            return next((f for f in app.federated_credentials if f.name == match["fic_name"]), None)
        key = match["fic"]
        return next((f for f in app.federated_credentials if key in (f.id, f.name)), None)

    def get_fic(self, call: Call, match: re.Match[str]) -> Reply:
        fic = self._fic(self._app(match), match)
        if fic is None or not self.api.readable(fic.created_at):
            raise _not_found(match["fic"] or match["fic_name"])
        return Reply(200, _select(render_fic(fic), call))

    def create_fic(self, call: Call, match: re.Match[str]) -> Reply:
        app = self._app(match)
        self._require_owner(call, app.owners)
        body = call.body if isinstance(call.body, dict) else {}
        self._claim_app(app)
        fic = self._new_fic(app, body)
        app.federated_credentials.append(fic)
        return Reply(201, render_fic(fic))

    def update_fic(self, call: Call, match: re.Match[str]) -> Reply:
        app = self._app(match)
        self._require_owner(call, app.owners)
        body = call.body if isinstance(call.body, dict) else {}
        fic = self._fic(app, match)
        upsert = (
            match["fic_name"] is not None and "create-if-missing" in call.headers.get("Prefer", "").lower()
        )
        if fic is None and upsert:
            self._claim_app(app)
            created = self._new_fic(app, {"name": match["fic_name"], **body})
            app.federated_credentials.append(created)
            return Reply(201, render_fic(created))
        if fic is None:
            raise _not_found(match["fic"] or match["fic_name"])
        if "name" in body and body["name"] != fic.name:
            raise ApiError(400, "Request_BadRequest", "Property 'name' is read-only and cannot be changed.")
        merged = {**render_fic(fic), **{k: v for k, v in body.items() if k != "id"}}
        self._validate_fic(merged, app, ignore=fic)
        self._claim_app(app)
        fic.issuer, fic.subject = merged["issuer"], merged["subject"]
        fic.audiences, fic.description = list(merged["audiences"]), merged.get("description")
        return Reply(204)

    def delete_fic(self, call: Call, match: re.Match[str]) -> Reply:
        app = self._app(match)
        self._require_owner(call, app.owners)
        fic = self._fic(app, match)
        if fic is None:
            raise _not_found(match["fic"] or match["fic_name"])
        self._claim_app(app)
        app.federated_credentials.remove(fic)
        return Reply(204)

    def _new_fic(self, app: Application, body: JsonObject) -> FederatedCredential:
        self._validate_fic(body, app, ignore=None)
        if len(app.federated_credentials) >= MAX_FICS_PER_APP:
            # Unconfirmed in the docs (one support guide reports this message); clients should
            # check capacity before writing instead of relying on it.
            raise ApiError(
                400,
                "Request_BadRequest",
                "Size of object exceeded limit. An application can have at most 20 federated identity "
                "credentials.",
            )
        return FederatedCredential(
            id=new_id(),
            name=body["name"],
            issuer=body["issuer"],
            subject=body["subject"],
            audiences=list(body["audiences"]),
            description=body.get("description"),
        )

    def _validate_fic(self, body: JsonObject, app: Application, ignore: FederatedCredential | None) -> None:
        name = body.get("name")
        if not isinstance(name, str) or not _FIC_NAME.fullmatch(name):
            raise _bad_value("name")
        for prop in ("issuer", "subject"):
            value = body.get(prop)
            if not isinstance(value, str) or not value or len(value) > 600:
                raise _bad_value(prop)
        audiences = body.get("audiences")
        if not isinstance(audiences, list) or len(audiences) != 1 or not isinstance(audiences[0], str):
            raise _bad_value("audiences")
        if not 0 < len(audiences[0]) <= 600:
            raise _bad_value("audiences")
        description = body.get("description")
        if description is not None and (not isinstance(description, str) or len(description) > 600):
            raise _bad_value("description")
        others = [f for f in app.federated_credentials if f is not ignore]
        if ignore is None and any(f.name == name for f in others):
            raise ApiError(
                409,
                "Request_MultipleObjectsWithSameKeyValue",
                f"FederatedIdentityCredential with name {name} already exists.",
            )
        if any(f.issuer == body["issuer"] and f.subject == body["subject"] for f in others):
            raise ApiError(
                400,
                "InvalidFederatedIdentityCredentialValue",
                f"FederatedIdentityCredential with issuer '{body['issuer']}' and subject '{body['subject']}' "
                "already exists on this application.",
            )

    def _claim_app(self, app: Application) -> None:
        """Entra rejects a FIC write while another write to the same application is in flight."""
        hold = self.world.settings.fic_write_hold_s
        if hold <= 0:
            return
        if app.id in self._busy_apps:
            # Modelled on the 409 reported for concurrent FIC writes to one parent
            # (terraform-provider-azurerm #19968); the exact code Graph sends is unconfirmed.
            raise ApiError(
                409,
                "ConcurrentFederatedIdentityCredentialsWrites",
                "Another write to the federated identity credentials of this application is in progress.",
            )
        self._busy_apps.add(app.id)
        asyncio.get_running_loop().call_later(hold, self._busy_apps.discard, app.id)

    # $batch

    async def batch(self, call: Call, _match: re.Match[str]) -> Reply:
        requests = call.body.get("requests") if isinstance(call.body, dict) else None
        if not isinstance(requests, list) or not requests:
            return graph_error(400, "BadRequest", "Invalid batch payload format.")
        if len(requests) > MAX_BATCH:
            return graph_error(400, "BadRequest", f"Limit of {MAX_BATCH} requests exceeded.")
        ids = [str(r.get("id")) for r in requests if isinstance(r, dict)]
        if len(set(ids)) != len(requests):
            return graph_error(400, "BadRequest", "Batch request contains duplicate or missing ids.")
        responses = [await self._batch_step(call, step) for step in requests]
        # Graph may answer in any order; answering in reverse keeps clients honest about matching by id.
        return Reply(200, {"responses": list(reversed(responses))})

    async def _batch_step(self, outer: Call, step: JsonObject) -> JsonObject:
        if str(step.get("url", "")).lower().startswith(("http://", "https://")):
            # Graph takes URLs relative to the version root inside a batch and rejects absolute
            # ones (msgraph-sdk-python #1015, msgraph-sdk-python-core #1116).
            error = graph_error(400, "BadRequest", "Invalid request URL: use a URL relative to /v1.0.")
            return {"id": str(step.get("id")), "status": 400, "headers": error.headers, "body": error.body}
        url = urlsplit(str(step.get("url", "")))
        path = (
            url.path
            if url.path.startswith("/v1.0")
            else "/v1.0" + ("" if url.path.startswith("/") else "/") + url.path
        )
        headers = {str(k): str(v) for k, v in (step.get("headers") or {}).items()}
        # Every request in a batch runs as the batch's caller (ownership checks need to know who).
        headers.setdefault("Authorization", outer.headers.get("Authorization", ""))
        inner = Call(
            method=str(step.get("method", "GET")).upper(),
            path=path,
            query=dict(parse_qsl(url.query)),
            headers=headers,
            body=step.get("body"),
            base_url=outer.base_url,
            in_batch=True,
        )
        reply = await self.api.serve(inner)
        answer: JsonObject = {"id": str(step["id"]), "status": reply.status, "headers": reply.headers}
        answer["headers"].setdefault("Content-Type", "application/json")
        if reply.body is not EMPTY:
            answer["body"] = reply.body
        return answer
