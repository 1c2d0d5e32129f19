"""A config written back as a document parses to the same config, in a canonical form."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from reconciler.core.model import FederationConfig
from reconciler.core.serialise import config_to_document
from reconciler.core.validation import Document, parse_config
from reconciler.documents import load_configs

SUBSCRIPTION = "/subscriptions/6b1e2c5a-3f4d-4e8a-9c7b-1a2b3c4d5e6f"
IDS = r"[a-z0-9][a-z0-9._-]{0,10}(/[a-z0-9][a-z0-9._-]{0,10}){0,3}"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "configs.yaml"


def reparse(config: FederationConfig) -> FederationConfig | None:
    parsed, problems = parse_config(Document("test", 1, config_to_document(config)))
    assert problems == []
    return parsed


def test_the_examples_survive_the_round_trip() -> None:
    for config in load_configs([EXAMPLES]):
        assert reparse(config) == config


@given(
    pipelines=st.one_of(st.just("all"), st.lists(st.integers(1, 10_000), min_size=1, max_size=5)),
    credential_name=st.one_of(st.none(), st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_-]{2,30}", fullmatch=True)),
    create=st.booleans(),
    prune=st.sampled_from(["managed", "none"]),
    explicit_id=st.one_of(
        st.none(),
        st.from_regex(IDS, fullmatch=True),
    ),
)
def test_any_valid_document_round_trips(
    pipelines: object, credential_name: str | None, create: bool, prune: str, explicit_id: str | None
) -> None:
    connection: dict[str, object] = {
        "name": "kv reader",
        "subscriptionId": "6B1E2C5A-3F4D-4E8A-9C7B-1A2B3C4D5E6F",
        "subscriptionName": "Payments Prod",
        "pipelines": pipelines,
    }
    if credential_name is not None:
        connection["credentialName"] = credential_name
    body: dict[str, object] = {
        "apiVersion": "wif-reconciler/v1",
        "kind": "FederationConfig",
        "organization": "Contoso",
        "project": "Payments",
        "tenantId": "72f988bf-86f1-41af-91ab-2d7cd011db47",
        "serviceConnection": connection,
        "application": {"displayName": "sc-pay", "create": True}
        if create
        else {"appId": "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0"},
        "roleAssignments": [
            {
                "role": "Key Vault Reader",
                "scope": "/subscriptions/6b1e2c5a-3f4d-4e8a-9c7b-1a2b3c4d5e6f/resourceGroups/rg",
            },
            {
                "role": "acdd72a7-3385-48ef-bd42-f606fba81ae7",
                "scope": "/subscriptions/6b1e2c5a-3f4d-4e8a-9c7b-1a2b3c4d5e6f",
            },
        ],
        "prune": prune,
    }
    if explicit_id is not None:
        body["id"] = explicit_id
    config, problems = parse_config(Document("test", 1, body))
    assert config is not None, problems

    document = config_to_document(config)

    assert reparse(config) == config
    assert config_to_document(config) == document  # canonical: the same config, the same document
    if credential_name is None:  # a derived name stays derived
        assert "credentialName" not in document["serviceConnection"]
