"""The simulator's own API under `/_sim/` (a prefix no Azure API uses).

Load, dump and reset the world; inject drift the way a person clicking in a portal
would (bypassing the API rules on purpose); set faults; read request counters.
"""

from __future__ import annotations

import re
import time

import yaml

from cloudsim.ado import WIF
from cloudsim.api import Api, ApiError, Call, Reply, RequestCounters
from cloudsim.arm import normalise_scope
from cloudsim.faults import Faults, FaultState
from cloudsim.limits import Limits, Throttle
from cloudsim.state import (
    Application,
    FederatedCredential,
    JsonObject,
    Organization,
    ServiceEndpoint,
    ServicePrincipal,
    Settings,
    World,
    new_id,
)

_APP_FIC = r"/_sim/applications/(?P<app>[^/]+)/federatedIdentityCredentials/(?P<name>[^/]+)"
_APP_OWNERS = r"/_sim/applications/(?P<app>[^/]+)/owners"
_ENDPOINT = r"/_sim/ado/(?P<org>[^/]+)/endpoints/(?P<id>[^/]+)"


def admin_error(status: int, code: str, message: str) -> Reply:
    return Reply(status, {"error": {"code": code, "message": message}})


class Admin:
    def __init__(
        self,
        world: World,
        counters: RequestCounters,
        fault_states: dict[str, FaultState],
        initial_state: JsonObject,
        throttle: Throttle,
    ) -> None:
        self.world = world
        self.throttle = throttle
        self.initial_limits = throttle.limits
        self.counters = counters
        self.fault_states = fault_states
        self.initial_state = initial_state
        # Admin calls are not counted with the Azure APIs.
        self.api = Api("admin", world, RequestCounters(), admin_error, audiences=None)
        self.api.input_errors_are_bad_requests = True
        add = self.api.routes.add
        add("GET", r"/_sim/state", "state.dump", self.dump)
        add("PUT", r"/_sim/state", "state.load", self.load)
        add("POST", r"/_sim/reset", "reset", self.reset)
        add("GET", r"/_sim/faults", "faults.get", self.get_faults)
        add("PUT", r"/_sim/faults", "faults.set", self.set_faults)
        add("GET", r"/_sim/limits", "limits.get", self.get_limits)
        add("PUT", r"/_sim/limits", "limits.set", self.set_limits)
        add("GET", r"/_sim/counters", "counters.get", self.get_counters)
        add("DELETE", r"/_sim/counters", "counters.reset", self.reset_counters)
        add("PATCH", r"/_sim/settings", "settings.update", self.update_settings)
        add("POST", r"/_sim/applications", "applications.seed", self.seed_application)
        add("POST", _APP_OWNERS, "owner.add", self.add_owner)
        add("DELETE", _APP_OWNERS + r"/(?P<owner>[^/]+)", "owner.remove", self.remove_owner)
        add("DELETE", _APP_FIC, "fic.delete", self.delete_fic)
        add("PATCH", _APP_FIC, "fic.change", self.change_fic)
        add(
            "DELETE",
            r"/_sim/roleAssignments",
            "roleAssignment.delete",
            self.delete_role_assignment,
        )
        add("POST", _ENDPOINT + r"/recreate", "endpoint.recreate", self.recreate_endpoint)
        add(
            "POST",
            _ENDPOINT + r"/convert-to-secret",
            "endpoint.toSecret",
            self.convert_to_secret,
        )
        add("POST", _ENDPOINT + r"/mark-legacy", "endpoint.markLegacy", self.mark_legacy)
        add("PATCH", _ENDPOINT, "endpoint.change", self.change_endpoint)

    @staticmethod
    def _body(call: Call) -> JsonObject:
        if not isinstance(call.body, dict):
            raise ApiError(400, "BadRequest", "The request body must be a JSON (or YAML) object.")
        return call.body

    # state

    def dump(self, call: Call, _match: re.Match[str]) -> Reply:
        state = self.world.to_json()
        if call.query.get("format") == "yaml":
            text = yaml.safe_dump(state, sort_keys=False)
            return Reply(200, headers={"Content-Type": "application/yaml"}, raw=text.encode())
        return Reply(200, state)

    def load(self, call: Call, _match: re.Match[str]) -> Reply:
        self.world.replace_with(World.from_json(self._body(call)))
        return Reply(204)

    def reset(self, _call: Call, _match: re.Match[str]) -> Reply:
        self.world.replace_with(World.from_json(self.initial_state))
        for state in self.fault_states.values():
            state.configure(Faults())
        self.throttle.configure(self.initial_limits)
        self.counters.reset()
        return Reply(204)

    # faults and counters

    def get_faults(self, _call: Call, _match: re.Match[str]) -> Reply:
        return Reply(200, {api: state.faults.to_json() for api, state in self.fault_states.items()})

    def set_faults(self, call: Call, _match: re.Match[str]) -> Reply:
        """Replace the faults of each API named in the body; APIs not named keep theirs."""
        body = self._body(call)
        unknown = set(body) - set(self.fault_states)
        if unknown:
            raise ApiError(
                400, "BadRequest", f"Unknown APIs {sorted(unknown)}; known: {sorted(self.fault_states)}."
            )
        for api, raw in body.items():
            self.fault_states[api].configure(Faults.from_json(raw))
        return self.get_faults(call, _match)

    def get_limits(self, _call: Call, _match: re.Match[str]) -> Reply:
        return Reply(200, self.throttle.limits.to_json())

    def set_limits(self, call: Call, _match: re.Match[str]) -> Reply:
        """Replace the limits (fields not named take their strict defaults) and start every budget afresh."""
        self.throttle.configure(Limits.from_json(self._body(call)))
        return self.get_limits(call, _match)

    def get_counters(self, _call: Call, _match: re.Match[str]) -> Reply:
        return Reply(200, self.counters.snapshot())

    def reset_counters(self, _call: Call, _match: re.Match[str]) -> Reply:
        self.counters.reset()
        return Reply(204)

    def update_settings(self, call: Call, _match: re.Match[str]) -> Reply:
        merged = {**self.world.settings.to_json(), **self._body(call)}
        self.world.settings = Settings.from_json(merged)
        return Reply(200, self.world.settings.to_json())

    # drift: Graph

    def seed_application(self, call: Call, _match: re.Match[str]) -> Reply:
        """Create an app (and its service principal), optionally backdated, without the Graph rules.

        `owners` (object ids) defaults to the caller's identity: a seeded app stands for one a
        person made and then added the reconciler to as owner (docs/deploy.md); `[]` leaves it
        foreign, so Graph refuses the caller's writes to it. `tags` (strings) are the app's tags,
        e.g. the tenant tag its owners write to hand it to an ADO project.
        """
        body = self._body(call)
        created = time.time() - float(body.get("createdSecondsAgo", 3600))
        owners = body.get("owners", [self.world.caller_object_id])
        if not isinstance(owners, list) or not all(isinstance(o, str) for o in owners):
            raise ApiError(400, "BadRequest", "owners must be a list of object ids.")
        tags = body.get("tags", [])
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise ApiError(400, "BadRequest", "tags must be a list of strings.")
        app = Application(
            id=new_id(),
            app_id=str(body.get("appId") or new_id()),
            display_name=str(body["displayName"]),
            created_at=created,
            owners=list(owners),
            tags=list(tags),
        )
        self.world.applications.append(app)
        reply: JsonObject = {"id": app.id, "appId": app.app_id}
        if body.get("servicePrincipal", True):
            sp = ServicePrincipal(
                id=new_id(), app_id=app.app_id, display_name=app.display_name, created_at=created
            )
            self.world.service_principals.append(sp)
            reply["servicePrincipalId"] = sp.id
        return Reply(201, reply)

    def _application(self, key: str) -> Application:
        app = self.world.application_by_app_id(key) or self.world.application(key)
        if app is None:
            raise ApiError(404, "NotFound", f"No application {key}.")
        return app

    def add_owner(self, call: Call, match: re.Match[str]) -> Reply:
        """What `az ad app owner add` does: body `{"id": objectId}`, by default the caller's identity."""
        app = self._application(match["app"])
        body = call.body if isinstance(call.body, dict) else {}
        owner = str(body.get("id") or self.world.caller_object_id)
        if owner not in app.owners:
            app.owners.append(owner)
        return Reply(200, {"owners": app.owners})

    def remove_owner(self, _call: Call, match: re.Match[str]) -> Reply:
        app = self._application(match["app"])
        if match["owner"] not in app.owners:
            raise ApiError(404, "NotFound", f"{match['owner']} does not own application {match['app']}.")
        app.owners.remove(match["owner"])
        return Reply(200, {"owners": app.owners})

    def _fic(self, match: re.Match[str]) -> tuple[Application, FederatedCredential]:
        key = match["app"]
        app = self.world.application_by_app_id(key) or self.world.application(key)
        fic = (
            next((f for f in app.federated_credentials if match["name"] in (f.name, f.id)), None)
            if app
            else None
        )
        if app is None or fic is None:
            raise ApiError(404, "NotFound", f"No federated credential {match['name']} on application {key}.")
        return app, fic

    def delete_fic(self, _call: Call, match: re.Match[str]) -> Reply:
        app, fic = self._fic(match)
        app.federated_credentials.remove(fic)
        return Reply(204)

    def change_fic(self, call: Call, match: re.Match[str]) -> Reply:
        _app, fic = self._fic(match)
        body = self._body(call)
        fic.issuer = str(body.get("issuer", fic.issuer))
        fic.subject = str(body.get("subject", fic.subject))
        fic.description = body.get("description", fic.description)
        if "audiences" in body:
            fic.audiences = list(body["audiences"])
        return Reply(200, fic.to_json())

    # drift: ARM

    def delete_role_assignment(self, call: Call, _match: re.Match[str]) -> Reply:
        wanted = call.query.get("id", "")
        scope, _, name = wanted.rpartition("/providers/Microsoft.Authorization/roleAssignments/")
        found = next(
            (
                a
                for a in self.world.role_assignments
                if a.name.lower() == name.lower() and normalise_scope(a.scope) == normalise_scope(scope)
            ),
            None,
        )
        if found is None:
            raise ApiError(404, "NotFound", f"No role assignment {wanted}.")
        self.world.role_assignments.remove(found)
        return Reply(204)

    # drift: ADO

    def _endpoint(self, match: re.Match[str]) -> tuple[Organization, ServiceEndpoint]:
        org = self.world.organization(match["org"])
        endpoint = org.endpoint(match["id"]) if org else None
        if org is None or endpoint is None:
            raise ApiError(
                404, "NotFound", f"No service connection {match['id']} in organization {match['org']}."
            )
        return org, endpoint

    def recreate_endpoint(self, _call: Call, match: re.Match[str]) -> Reply:
        """Delete and create the connection again: same settings, a new id, no pipeline permissions."""
        org, endpoint = self._endpoint(match)
        org.endpoints.remove(endpoint)
        clone = ServiceEndpoint.from_json(endpoint.to_json())
        clone.id, clone.created_at = new_id(), time.time()
        clone.pipeline_permissions = {"allPipelines": None, "pipelines": []}
        org.endpoints.append(clone)
        return Reply(200, {"id": clone.id})

    def convert_to_secret(self, call: Call, match: re.Match[str]) -> Reply:
        _org, endpoint = self._endpoint(match)
        body = call.body if isinstance(call.body, dict) else {}
        secret = str(body.get("secret", "s1mulated-secret"))  # a placeholder, never returned by ADO
        endpoint.scheme = "ServicePrincipal"
        endpoint.parameters = {
            **{
                k: v
                for k, v in endpoint.parameters.items()
                if k.lower() in ("tenantid", "serviceprincipalid")
            },
            "authenticationType": "spnKey",
            "serviceprincipalkey": secret,
        }
        endpoint.data = {k: v for k, v in endpoint.data.items() if k.lower() != "revertschemedeadline"}
        return Reply(204)

    def mark_legacy(self, _call: Call, match: re.Match[str]) -> Reply:
        _org, endpoint = self._endpoint(match)
        if endpoint.scheme != WIF:
            raise ApiError(400, "BadRequest", "Only workload identity federation connections have an issuer.")
        endpoint.issuer_format = "vstoken"
        return Reply(204)

    def change_endpoint(self, call: Call, match: re.Match[str]) -> Reply:
        _org, endpoint = self._endpoint(match)
        body = self._body(call)
        endpoint.is_ready = bool(body.get("isReady", endpoint.is_ready))
        if isinstance(body.get("operationStatus"), dict):
            endpoint.operation_status = {str(k): str(v) for k, v in body["operationStatus"].items()}
        endpoint.name = str(body.get("name", endpoint.name))
        if "data" in body:
            endpoint.data.update({str(k): str(v) for k, v in body["data"].items()})
        return Reply(204)
