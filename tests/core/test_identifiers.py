"""Each identifier rule of reconciler/core/identifiers.py, and hostile strings against all of them."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconciler.core.identifiers import (
    ArmScope,
    ConfigId,
    ConnectionName,
    CredentialName,
    Guid,
    IdentifierError,
    OrganizationName,
    ProjectName,
    RequestId,
    ScopePattern,
)

SUB = "6b1e2c5a-3f4d-4e8a-9c7b-1a2b3c4d5e6f"
RG = f"/subscriptions/{SUB}/resourceGroups/rg-pay"
SCHEMA = Path(__file__).resolve().parents[2] / "schemas" / "ticket-request.v1.schema.json"


def rejected(parse: Callable[..., object], text: object) -> str:
    with pytest.raises(IdentifierError) as caught:
        parse(text, "the.field")
    assert caught.value.field == "the.field"
    assert str(caught.value).startswith("the.field: ")
    return caught.value.message


# ---------------------------------------------------------------------------- ARM scopes


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        (f"/subscriptions/{SUB.upper()}", f"/subscriptions/{SUB}"),
        (f"/SUBSCRIPTIONS/{SUB}/resourcegroups/RG-Pay", f"/subscriptions/{SUB}/resourceGroups/rg-pay"),
        (
            f"{RG}/providers/Microsoft.KeyVault/vaults/kv-pay",
            f"{RG}/providers/microsoft.keyvault/vaults/kv-pay",
        ),
        (
            f"{RG}/providers/Microsoft.Network/virtualNetworks/vn/subnets/sn",
            f"{RG}/providers/microsoft.network/virtualnetworks/vn/subnets/sn",
        ),
        (
            f"/subscriptions/{SUB}/providers/Microsoft.Web/sites/app",
            f"/subscriptions/{SUB}/providers/microsoft.web/sites/app",
        ),
        (
            "/providers/microsoft.management/managementgroups/MG-1",
            "/providers/Microsoft.Management/managementGroups/mg-1",
        ),
        (f"/subscriptions/{SUB}/resourceGroups/rg_(1).x", f"/subscriptions/{SUB}/resourceGroups/rg_(1).x"),
        (
            f"/subscriptions/{SUB}/resourceGroups/{'r' * 90}",
            f"/subscriptions/{SUB}/resourceGroups/{'r' * 90}",
        ),
    ],
)
def test_a_scope_parses_to_one_canonical_spelling_that_parses_to_itself(text: str, canonical: str) -> None:
    scope = ArmScope.parse(text)

    assert str(scope) == canonical
    assert ArmScope.parse(str(scope)) == scope


def test_a_scope_is_parsed_into_typed_segments() -> None:
    scope = ArmScope.parse(f"{RG}/providers/Microsoft.Network/virtualNetworks/vn/subnets/sn")

    assert (scope.subscription, scope.resource_group, scope.provider) == (SUB, "rg-pay", "microsoft.network")
    assert scope.resources == (("virtualnetworks", "vn"), ("subnets", "sn"))
    assert scope.root == ArmScope(subscription=Guid(SUB))


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (f"{RG[: -len('rg-pay')]}..", "no '.' or '..' segments"),
        (f"{RG}/..", "no '.' or '..' segments"),
        (f"/subscriptions/{SUB}/resourceGroups/.", "no '.' or '..' segments"),
        (f"/subscriptions/{SUB}/resourceGroups/%2e%2e", "percent-encoding"),
        (f"/subscriptions/{SUB}/resourceGroups/rg%2Fx", "percent-encoding"),
        (f"/subscriptions/{SUB}/resourceGroups/rg\\..\\x", "'\\'"),
        (f"/subscriptions/{SUB}//resourceGroups/rg", "no empty segments"),
        (f"{RG}/", "no empty segments"),
        (f"/subscriptions/{SUB}/resourceGroups/rg.", "not a valid resource group name"),
        (f"/subscriptions/{SUB}/resourceGroups/rg?x=1", "'?'"),
        (f"/subscriptions/{SUB}/resourceGroups/rg#x", "'#'"),
        (f"/subscriptions/{SUB}/resourceGroups/rg x", "printable ASCII"),
        (f"/subscriptions/{SUB}/resourceGroups/rg\x00", "printable ASCII"),
        (f"/subscriptions/{SUB}/resourceGroups/rg\u2024", "printable ASCII"),  # one-dot leader
        (f"/subscriptions/{SUB}/resourceGroups/r\u0430", "printable ASCII"),  # Cyrillic a
        (f"/subscriptions/{SUB}/resource\uff27roups/rg", "printable ASCII"),  # fullwidth G
        (f"/subscriptions/{SUB}/resourceGroups/{'r' * 91}", "not a valid resource group name"),
        ("/subscriptions/123/resourceGroups/rg", "the subscription must be a GUID"),
        (f"subscriptions/{SUB}", "starts with '/'"),
        ("/", "no empty segments"),
        (f"/subscriptions/{SUB}/resourceGroups", "resource group name is missing"),
        (f"{RG}/providers/Microsoft.KeyVault", "resource type is missing"),
        (f"{RG}/providers/Microsoft.KeyVault/vaults", "resource name is missing"),
        (f"{RG}/providers/KeyVault/vaults/kv", "not a valid resource provider namespace"),
        (f"{RG}/things/x", "expected 'providers'"),
        ("/providers/Microsoft.Management/managementGroups/mg/subscriptions/x", "nothing may follow"),
        ("/tenants/x", "must start with /subscriptions/"),
        ("/" + "a" * 1100, "at most 1024 characters"),
    ],
)
def test_a_scope_with_path_tricks_or_outside_the_grammar_is_rejected(text: str, reason: str) -> None:
    assert reason in rejected(ArmScope.parse, text)


def test_a_pattern_star_matches_exactly_one_parsed_segment() -> None:
    pattern = ScopePattern("/subscriptions/*/resourcegroups/*")

    assert pattern.covers(ArmScope.parse(RG))
    assert pattern.covers(ArmScope.parse(f"{RG}/providers/Microsoft.KeyVault/vaults/kv"))
    assert not pattern.covers(ArmScope.parse(f"/subscriptions/{SUB}"))
    assert not pattern.covers(ArmScope.parse(f"/subscriptions/{SUB}/providers/Microsoft.Web/sites/x"))
    assert not pattern.covers(ArmScope.parse("/providers/Microsoft.Management/managementGroups/mg"))
    assert not pattern.covers(f"/subscriptions/{SUB}/resourceGroups/..")  # text that is no scope
    assert not pattern.covers(f"/subscriptions/{SUB}/resourceGroups/%2e%2e")


@pytest.mark.parametrize("pattern", ["/subscriptions/*/resourceGroups/..", "/subscriptions/%2A", "/", "x"])
def test_a_pattern_with_path_tricks_is_rejected(pattern: str) -> None:
    with pytest.raises(IdentifierError):
        ScopePattern(pattern)


# ---------------------------------------------------------------------------- names


def test_a_guid_is_canonical_in_lower_case() -> None:
    assert Guid(SUB.upper()) == SUB
    for bad in ["123", f"{{{SUB}}}", SUB.replace("-", ""), SUB + "\n", f" {SUB}", SUB[:-1] + "g", 42]:
        assert "GUID" in rejected(Guid, bad)


def test_an_organization_name_follows_azure_devops() -> None:
    assert OrganizationName("Contoso-2") == "Contoso-2"
    assert OrganizationName("a") == "a"
    for bad in ["-contoso", "contoso-", "con toso", "contoso/x", "c\u00f6ntoso", "x" * 51, "..", ""]:
        rejected(OrganizationName, bad)


@pytest.mark.parametrize(
    "name", ["payments", "My Project", "Zahlungsverkehr \u00fcbersicht", "a.b", "x" * 64]
)
def test_a_project_name_azure_devops_accepts_is_accepted(name: str) -> None:
    assert ProjectName(name) == name


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("../other-org/x", "holds /"),
        ("a\\b", "holds \\"),
        ("a:b", "holds :"),
        ("a%2Fb", "holds %"),
        ("a;b", "holds ;"),
        ("a{b}", "holds { }"),
        ("_private", "starts with '_'"),
        (".hidden", "starts with '_' or '.'"),
        ("trailing.", "ends with '.'"),
        ("a..b", "holds '..'"),
        ("App_Browsers", "reserves"),
        ("web.config", "reserves"),
        ("COM1", "reserves"),
        ("defaultcollection", "reserves"),
        ("a\uff0fb", "Unicode folds"),  # fullwidth solidus
        ("a\u2024\u2024b", "Unicode folds"),  # one-dot leaders, NFKC '..'
        ("e\u0301", "composed form (NFC)"),  # not NFC: e + combining acute
        ("a\u200bb", "U+200B"),  # zero width space
        ("a\u202eb", "U+202E"),  # right-to-left override
        ("a\tb", "U+0009"),
        ("a\u00a0b", "Unicode folds"),  # no-break space
        (" padded", "starts or ends with a space"),
        ("x" * 65, "longer than 64"),
    ],
)
def test_a_project_name_azure_devops_refuses_is_rejected(name: str, reason: str) -> None:
    assert reason in rejected(ProjectName, name)


def test_a_connection_name_is_printable_and_unambiguous() -> None:
    assert ConnectionName("kv reader (prod)") == "kv reader (prod)"
    assert ConnectionName("team/kv-reader") == "team/kv-reader"  # ADO allows "/" in connection names
    for bad in ["..", ".", "a/../b", "x/.", "./x", "a\x00b", "a\u200bb", "a\uff0fb", " a", "x" * 257]:
        rejected(ConnectionName, bad)


def test_a_credential_name_follows_entra() -> None:
    assert CredentialName("contoso--payments--kv-reader") == "contoso--payments--kv-reader"
    for bad in ["ab", "-abc", "_abc", "a.bc", "a/bc", "x" * 121, "abc\n"]:
        rejected(CredentialName, bad)


def test_a_config_id_is_lower_case_segments_and_has_a_route_and_row_form() -> None:
    assert ConfigId("contoso/payments/kv-reader").row_key == "contoso~payments~kv-reader"
    assert ConfigId.from_route("contoso~payments~kv-reader") == "contoso/payments/kv-reader"
    assert ConfigId.from_route("contoso%2Fpayments%2fkv-reader") == "contoso/payments/kv-reader"
    assert ConfigId.derive("Contoso", "My Project", "kv reader!") == "contoso/my-project/kv-reader"
    for bad in ["Contoso/x", "a//b", "a/../b", "a/./b", "/a", "a/", "-a", "a b", "a\n", "\u0430", "a" * 201]:
        rejected(ConfigId, bad)
    rejected(ConfigId.from_route, "a~..~b")
    with pytest.raises(IdentifierError):
        ConfigId.derive("contoso", "!!!", "x")  # folds to nothing: no id could name it


def test_a_request_id_starts_with_a_letter_or_digit() -> None:
    for good in ["CHG0012345", "sweep-20240101T000000Z", "a", "cli-import:1.2_3"]:
        assert RequestId(good) == good
    for bad in ["", ".", "..", "-x", ":x", "a b", "a/b", "CHG1\n", "\u0660", "x" * 129]:
        rejected(RequestId, bad)


def _schema_definitions() -> dict[str, dict[str, Any]]:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    connection = schema["$defs"]["federationConfig"]["properties"]["serviceConnection"]["properties"]
    return {
        "requestId": schema["properties"]["requestId"],
        "configId": schema["$defs"]["configId"],
        "guid": schema["$defs"]["guid"],
        "credentialName": connection["credentialName"],
    }


_SCHEMA_RULES = {"requestId": RequestId, "configId": ConfigId, "guid": Guid, "credentialName": CredentialName}


@given(
    st.sampled_from(sorted(_SCHEMA_RULES)),
    st.one_of(
        st.text(alphabet="aF09-._:/~ \u0430", max_size=40),
        st.uuids().map(str),
        st.text(alphabet="ab", min_size=118, max_size=210),
    ),
)
def test_the_published_ticket_schema_states_the_same_id_rules(name: str, text: str) -> None:
    """The schema must repeat the rules for ticket senders; this keeps the copy and the rule one."""
    definition = _schema_definitions()[name]
    # A schema pattern is searched, and its '$' also matches before a final newline: the core
    # parses again (see reconciler/state/tickets.py), so texts with newlines are left out here.
    schema_accepts = re.search(definition["pattern"], text) is not None
    schema_accepts &= len(text) <= definition.get("maxLength", len(text))
    assert schema_accepts == _SCHEMA_RULES[name].is_valid(text)


# ---------------------------------------------------------------------------- hostile input

_PIECES = st.sampled_from(
    [
        "/", "//", ".", "..", "%2e", "%2E%2e", "%2F", "%5C", "\\", "?", "#", "~", "\x00", "\n", " ",
        "\u2024", "\uff0f", "\uff0e", "\u0430", "\u200b", "\u202e", "e\u0301", "\ufeff", "\u00a0",
        "subscriptions", "resourceGroups", "resourcegroups", "providers", "Microsoft.Management",
        "managementGroups", SUB, SUB.upper(), "rg-pay", "Microsoft.KeyVault", "vaults", "kv",
    ]
)  # fmt: skip
_HOSTILE = st.one_of(
    st.lists(_PIECES, max_size=14).map("".join),
    st.lists(_PIECES, max_size=8).map(lambda parts: f"/subscriptions/{SUB}/resourceGroups/" + "".join(parts)),
    st.text(max_size=60),
    st.text(min_size=1000, max_size=1100, alphabet="a/."),
)


def _no_dot_segment(text: str, separator: str = "/") -> bool:
    return not {".", ".."} & set(text.split(separator))


@given(_HOSTILE)
def test_a_hostile_scope_is_rejected_or_canonical_without_dot_segments(text: str) -> None:
    try:
        scope = ArmScope.parse(text)
    except IdentifierError as error:
        assert error.field == "scope"
        return
    canonical = str(scope)
    assert ArmScope.parse(canonical) == scope and str(ArmScope.parse(canonical)) == canonical
    assert _no_dot_segment(canonical) and canonical.isascii() and canonical.isprintable()
    assert not set(canonical) & set("%\\?# ")


_NAMES: list[
    type[Guid | OrganizationName | ProjectName | ConnectionName | CredentialName | ConfigId | RequestId]
]
_NAMES = [Guid, OrganizationName, ProjectName, ConnectionName, CredentialName, ConfigId, RequestId]


@given(st.sampled_from(_NAMES), _HOSTILE)
def test_a_hostile_name_is_rejected_or_canonical_and_never_a_path_step(
    kind: type[
        Guid | OrganizationName | ProjectName | ConnectionName | CredentialName | ConfigId | RequestId
    ],
    text: str,
) -> None:
    try:
        value = kind(text, "field")
    except IdentifierError as error:
        assert error.field == "field"
        return
    assert kind(str(value), "field") == value
    assert _no_dot_segment(value) and "\x00" not in value and value.isprintable()
    # Only these two may hold '/': a config id as its separator, a connection name as text that
    # never enters a URL path (ADO takes it in request bodies), and neither has a '..' segment.
    assert "/" not in value or kind in (ConfigId, ConnectionName)
