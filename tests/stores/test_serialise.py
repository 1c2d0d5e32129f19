"""A config written back as a document (the stored and exported form) parses to the same config."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from reconciler.core.model import FederationConfig
from reconciler.core.serialise import config_to_document
from reconciler.core.validation import Document, parse_config
from reconciler.documents import load_configs
from tests.stores.conftest import SUBSCRIPTION, document

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "configs.yaml"
IDS = r"[a-z0-9][a-z0-9._-]{0,10}(/[a-z0-9][a-z0-9._-]{0,10}){0,3}"


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
    explicit_id=st.one_of(st.none(), st.from_regex(IDS, fullmatch=True)),
)
def test_any_valid_document_round_trips(
    pipelines: object, credential_name: str | None, create: bool, prune: str, explicit_id: str | None
) -> None:
    body = document("kv reader", organization="Contoso", prune=prune)
    body["serviceConnection"]["pipelines"] = pipelines
    body["serviceConnection"]["subscriptionId"] = SUBSCRIPTION.upper()
    if credential_name is not None:
        body["serviceConnection"]["credentialName"] = credential_name
    if create:
        body["application"] = {"displayName": "sc-pay", "create": True}
    body["roleAssignments"].append(
        {"role": "acdd72a7-3385-48ef-bd42-f606fba81ae7", "scope": f"/subscriptions/{SUBSCRIPTION}"}
    )
    if explicit_id is not None:
        body["id"] = explicit_id
    config, problems = parse_config(Document("test", 1, body))
    assert config is not None, problems

    document_again = config_to_document(config)

    assert reparse(config) == config
    assert config_to_document(config) == document_again  # canonical: the same config, the same document
    if credential_name is None:  # a derived name stays derived
        assert "credentialName" not in document_again["serviceConnection"]
