"""Turns parsed config documents (plain dicts) into FederationConfigs, or says exactly what is wrong.

Every problem names the source, the document, the field and what is expected, and
validation reports every problem it finds rather than stopping at the first.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from reconciler.core.identifiers import (
    MAX_SCOPE_LENGTH,
    ApplicationDisplayName,
    ArmScope,
    ConfigId,
    ConnectionName,
    CredentialName,
    Guid,
    IdentifierError,
    OrganizationName,
    ProjectName,
)
from reconciler.core.model import (
    MAX_CREDENTIALS_PER_APP,
    ApplicationRef,
    FederationConfig,
    PipelineAccess,
    PruneMode,
    RoleGrant,
    credential_name_for,
)
from reconciler.core.roles import builtin_role

API_VERSION = "wif-reconciler/v1"
CONFIG_KIND = "FederationConfig"

_MAX_NAME_LENGTH = 256
# Azure DevOps pipeline (definition) ids are .NET Int32s (PipelinePermission.Id in its web API
# contract): a larger id is refused by ADO's pipeline permissions, after everything else of the
# config was already written.
MAX_PIPELINE_ID = 2**31 - 1

# An identifier rule of reconciler/core/identifiers.py: (value, field) -> canonical text, or IdentifierError.
_Identifier = Callable[[object, str], str]

_TOP_FIELDS = {
    "apiVersion",
    "kind",
    "id",
    "organization",
    "project",
    "tenantId",
    "serviceConnection",
    "application",
    "roleAssignments",
    "prune",
}
_CONNECTION_FIELDS = {"name", "subscriptionId", "subscriptionName", "pipelines", "credentialName"}
_APPLICATION_FIELDS = {"appId", "displayName", "create"}
_GRANT_FIELDS = {"role", "scope"}

_CONTROL_CHARACTER = re.compile(r"[\x00-\x1f]")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one field of one document."""

    source: str
    document: int  # 1-based position of the document in its source
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.source}, document {self.document}"
        return f"{where}, {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


@dataclass(frozen=True)
class Document:
    """One parsed YAML/JSON document and where it came from."""

    source: str
    index: int
    body: object


class _Reader:
    """Reads fields of one document, collecting problems instead of raising."""

    def __init__(self, document: Document) -> None:
        self.document = document
        self.problems: list[Problem] = []

    def fail(self, field: str, message: str) -> None:
        self.problems.append(Problem(self.document.source, self.document.index, field, message))

    def mapping(self, value: object, field: str, allowed: set[str]) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            self.fail(field, f"expected a mapping, got {_kind(value)}")
            return {}
        for key in value:
            if key not in allowed:
                where = f"{field}.{key}" if field else str(key)
                self.fail(where, f"unknown field; expected one of {', '.join(sorted(allowed))}")
        return value

    def text(
        self,
        body: Mapping[str, Any],
        key: str,
        field: str,
        *,
        required: bool = True,
        max_length: int = _MAX_NAME_LENGTH,
    ) -> str:
        value = body.get(key)
        if value is None:
            if required:
                self.fail(field, "is required")
            return ""
        if not isinstance(value, str) or not value.strip():
            self.fail(field, f"expected a non-empty string, got {_kind(value)}")
            return ""
        if len(value) > max_length or _CONTROL_CHARACTER.search(value):
            self.fail(field, f"expected at most {max_length} printable characters")
            return ""
        return value.strip()

    def identifier(
        self, kind: _Identifier, body: Mapping[str, Any], key: str, field: str, *, required: bool = True
    ) -> str:
        """The field parsed by its identifier rule (reconciler/core/identifiers.py), or "" with a problem."""
        value = self.text(body, key, field, required=required)
        return self.parse(kind, value, field) if value else ""

    def parse(self, kind: _Identifier, value: object, field: str) -> str:
        try:
            return str(kind(value, field))  # plain str: some SDKs (Azure Tables) refuse subclasses
        except IdentifierError as error:
            self.fail(field, error.message)
            return ""

    def guid(self, body: Mapping[str, Any], key: str, field: str, *, required: bool = True) -> str:
        return self.identifier(Guid, body, key, field, required=required)


def parse_configs(documents: Iterable[Document]) -> tuple[list[FederationConfig], list[Problem]]:
    """Validate every document, then the rules that span documents (ids, shared apps)."""
    configs: list[tuple[Document, FederationConfig]] = []
    problems: list[Problem] = []
    for document in documents:
        config, found = parse_config(document)
        problems.extend(found)
        if config is not None:
            configs.append((document, config))
    problems.extend(_cross_document_problems(configs))
    return [config for _, config in configs], problems


def parse_config(document: Document) -> tuple[FederationConfig | None, list[Problem]]:
    reader = _Reader(document)
    body = reader.mapping(document.body, "", _TOP_FIELDS)
    if not body:
        if isinstance(document.body, Mapping):
            reader.fail("", "the document is empty")
        return None, reader.problems
    if body.get("apiVersion") != API_VERSION:
        reader.fail("apiVersion", f"expected {API_VERSION!r}, got {body.get('apiVersion')!r}")
    if body.get("kind") != CONFIG_KIND:
        reader.fail("kind", f"expected {CONFIG_KIND!r}, got {body.get('kind')!r}")
    organization = reader.identifier(OrganizationName, body, "organization", "organization")
    project = reader.identifier(ProjectName, body, "project", "project")
    tenant_id = reader.guid(body, "tenantId", "tenantId")
    connection = reader.mapping(body.get("serviceConnection"), "serviceConnection", _CONNECTION_FIELDS)
    connection_name = reader.identifier(ConnectionName, connection, "name", "serviceConnection.name")
    subscription_id = reader.guid(connection, "subscriptionId", "serviceConnection.subscriptionId")
    subscription_name = reader.text(connection, "subscriptionName", "serviceConnection.subscriptionName")
    pipelines = _pipelines(reader, connection.get("pipelines", "all"))
    application = _application(reader, body.get("application"))
    grants = _grants(reader, body.get("roleAssignments", []))
    prune = _prune(reader, body.get("prune", PruneMode.MANAGED.value))
    config_id = _config_id(reader, body, organization, project, connection_name)
    credential_name = _credential_name(reader, connection, config_id)
    if reader.problems:
        return None, reader.problems
    config = FederationConfig(
        id=config_id,
        organization=organization,
        project=project,
        tenant_id=tenant_id,
        connection_name=connection_name,
        subscription_id=subscription_id,
        subscription_name=subscription_name,
        pipelines=pipelines,
        application=application,
        role_grants=grants,
        credential_name=credential_name,
        prune=prune,
    )
    return config, []


derive_config_id = ConfigId.derive


def id_takeover(stored: FederationConfig, incoming: FederationConfig) -> str | None:
    """Why `incoming` may not be stored over `stored` (the config under the same id), or None.

    A derived id folds every run of other characters to '-', so different connections derive
    the same id (`kv reader`, `kv--reader`, `kv/reader` and `kv-reader`). A config whose id is
    its own connection's derived id (whether or not `id:` was written) never takes over a config
    of another connection: it would move that config, and the federated credential named after
    the id, to the new connection, leaving the old one unable to sign in. An explicit id of any
    other value still moves a config to another connection.
    """
    if stored.connection.folded == incoming.connection.folded:
        return None
    derived = _derived_or_none(incoming.organization, incoming.project, incoming.connection_name)
    if derived != incoming.id:
        return None
    return (
        f"config {stored.id!r} already manages service connection {stored.connection}; this config "
        f"for {incoming.connection} derives the same id, so storing it would take that config over: "
        "give this config an explicit id of its own (or retire that config and let its prune finish first)"
    )


def _derived_or_none(organization: str, project: str, name: str) -> str | None:
    try:
        return str(derive_config_id(organization, project, name))
    except IdentifierError:
        return None


def _config_id(reader: _Reader, body: Mapping[str, Any], organization: str, project: str, name: str) -> str:
    explicit = body.get("id")
    if explicit is not None:
        return reader.parse(ConfigId, explicit, "id")
    if not (organization and project and name):
        return ""
    try:
        return str(derive_config_id(organization, project, name))
    except IdentifierError:
        # A name of only symbols folds to nothing, and no id could name this config later.
        reader.fail("id", "cannot be derived from organization/project/name; give the config an explicit id")
        return ""


def _credential_name(reader: _Reader, connection: Mapping[str, Any], config_id: str) -> str:
    name = connection.get("credentialName")
    if name is None:
        return credential_name_for(config_id) if config_id else ""
    return reader.parse(CredentialName, name, "serviceConnection.credentialName")


def _pipelines(reader: _Reader, value: object) -> PipelineAccess:
    if value == "all":
        return PipelineAccess(all_pipelines=True)
    if isinstance(value, list) and all(
        isinstance(v, int) and not isinstance(v, bool) and 0 < v <= MAX_PIPELINE_ID for v in value
    ):
        return PipelineAccess(pipeline_ids=frozenset(value))
    reader.fail(
        "serviceConnection.pipelines",
        f"expected 'all' or a list of pipeline ids (whole numbers from 1 to {MAX_PIPELINE_ID}), "
        f"got {_shown_value(value)}",
    )
    return PipelineAccess()


def _shown_value(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _application(reader: _Reader, value: object) -> ApplicationRef:
    body = reader.mapping(value, "application", _APPLICATION_FIELDS)
    if not body:
        if isinstance(value, Mapping) or value is None:
            reader.fail(
                "application", "is required: give appId to adopt an app, or displayName with create: true"
            )
        return ApplicationRef()
    create = body.get("create", False)
    if not isinstance(create, bool):
        reader.fail("application.create", f"expected true or false, got {create!r}")
        return ApplicationRef()
    if create:
        if "appId" in body:
            reader.fail(
                "application.appId", "must not be given with create: true (the new app's id is Entra's)"
            )
        name = reader.identifier(ApplicationDisplayName, body, "displayName", "application.displayName")
        return ApplicationRef(display_name=name, create=True)
    if "appId" not in body:
        reader.fail("application.appId", "is required unless create: true is set with a displayName")
        return ApplicationRef()
    return ApplicationRef(app_id=reader.guid(body, "appId", "application.appId"))


def _grants(reader: _Reader, value: object) -> tuple[RoleGrant, ...]:
    if not isinstance(value, list):
        reader.fail("roleAssignments", f"expected a list, got {_kind(value)}")
        return ()
    grants: list[RoleGrant] = []
    for position, item in enumerate(value):
        field = f"roleAssignments[{position}]"
        body = reader.mapping(item, field, _GRANT_FIELDS)
        role = reader.text(body, "role", f"{field}.role")
        # A scope's own rule bounds it (ARM ids of nested resources pass 256 characters easily).
        scope = reader.text(body, "scope", f"{field}.scope", max_length=MAX_SCOPE_LENGTH)
        role_id = _role_id(reader, role, f"{field}.role") if role else ""
        scope = _scope(reader, scope, f"{field}.scope") if scope else ""
        if role_id and scope:
            grants.append(RoleGrant(role_id=role_id, scope=scope, role_name=role))
    return tuple(dict.fromkeys(grants))  # the same grant twice is one grant


def _scope(reader: _Reader, scope: str, field: str) -> str:
    """The scope as written when it is valid (RoleGrant keeps the canonical form and the spelling)."""
    try:
        ArmScope.parse(scope, field)
        return scope
    except IdentifierError as error:
        reader.fail(field, error.message)
        return ""


def _role_id(reader: _Reader, role: str, field: str) -> str:
    if Guid.is_valid(role):
        return str(Guid(role))
    known = builtin_role(role)
    if known is None:
        reader.fail(field, f"unknown role {role!r}: use a built-in role name or a role definition GUID")
        return ""
    return known.id


def _prune(reader: _Reader, value: object) -> PruneMode:
    try:
        return PruneMode(str(value))
    except ValueError:
        reader.fail("prune", f"expected 'managed' or 'none', got {value!r}")
        return PruneMode.NONE


def _cross_document_problems(configs: Sequence[tuple[Document, FederationConfig]]) -> list[Problem]:
    problems: list[Problem] = []
    first_by_id: dict[str, Document] = {}
    first_by_connection: dict[tuple[str, str, str], Document] = {}
    by_app: dict[str, list[tuple[Document, FederationConfig]]] = defaultdict(list)
    for document, config in configs:
        earlier = first_by_id.setdefault(config.id, document)
        if earlier is not document:
            message = f"duplicate config id {config.id!r} ({_where(earlier)})"
            problems.append(_problem(document, "id", message))
        key = config.connection
        earlier = first_by_connection.setdefault(key.folded, document)
        if earlier is not document:
            message = f"service connection {key} is already managed by another config ({_where(earlier)})"
            problems.append(_problem(document, "serviceConnection.name", message))
        by_app[config.application.key].append((document, config))
    for app_key, sharing in by_app.items():
        problems.extend(_shared_app_problems(app_key, sharing))
    return problems


def _shared_app_problems(app_key: str, sharing: list[tuple[Document, FederationConfig]]) -> list[Problem]:
    problems: list[Problem] = []
    app = app_key.split(":", 1)[1]
    if len(sharing) > MAX_CREDENTIALS_PER_APP:
        document = sharing[MAX_CREDENTIALS_PER_APP][0]
        problems.append(
            _problem(
                document,
                "application",
                f"{len(sharing)} configs use application {app}, but Entra allows at most "
                f"{MAX_CREDENTIALS_PER_APP} federated credentials per application",
            )
        )
    names: dict[str, Document] = {}
    tenants = {config.tenant_id for _, config in sharing}
    for document, config in sharing:
        earlier = names.setdefault(config.credential_name.lower(), document)
        if earlier is not document:
            problems.append(
                _problem(
                    document,
                    "serviceConnection.credentialName",
                    f"credential name {config.credential_name!r} is already used on application {app} "
                    f"({_where(earlier)}); names must be unique per application",
                )
            )
        if len(tenants) > 1:
            problems.append(
                _problem(document, "tenantId", f"configs sharing application {app} name different tenants")
            )
    return problems


def _problem(document: Document, field: str, message: str) -> Problem:
    return Problem(document.source, document.index, field, message)


def _where(document: Document) -> str:
    return f"first in {document.source}, document {document.index}"


def _kind(value: object) -> str:
    return "nothing" if value is None else type(value).__name__
