"""Findings of the adversarial review of 2026-12-04 (docs/security.md, "Adversarial review"):
each test is an attack that worked on main before its fix, or proves that one did not.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.core.validation import Document, parse_config
from reconciler.documents import InputError, read_documents

VAULT = "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg-pay"
OTHER = "/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg-other"


def problems_of(path: Path) -> str:
    with pytest.raises(InputError) as refused:
        read_documents(path)
    return "\n".join(refused.value.problems)


def test_a_yaml_file_with_a_key_twice_is_refused_not_read_as_its_last_value(tmp_path: Path) -> None:
    """A reviewer reads the first `scope:`, PyYAML kept the last: a grant nobody reviewed."""
    path = tmp_path / "configs.yaml"
    path.write_text(f"roleAssignments:\n  - role: Key Vault Reader\n    scope: {VAULT}\n    scope: {OTHER}\n")
    problem = problems_of(path)
    assert "'scope' appears twice" in problem and "line 4" in problem


def test_a_key_twice_at_the_top_of_a_yaml_document_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "configs.yaml"
    path.write_text("organization: contoso\nproject: payments\norganization: fabrikam\n")
    assert "'organization' appears twice" in problems_of(path)


def test_a_json_file_with_a_key_twice_is_refused_like_a_ticket(tmp_path: Path) -> None:
    path = tmp_path / "configs.json"
    path.write_text('{"organization": "contoso", "organization": "fabrikam"}')
    assert "'organization' appears twice" in problems_of(path)


def test_yaml_merge_keys_and_distinct_keys_are_still_read(tmp_path: Path) -> None:
    path = tmp_path / "configs.yaml"
    path.write_text("base: &base {role: Reader}\ngrant:\n  <<: *base\n  scope: x\n1: one\n'1': text\n")
    (document,) = read_documents(path)
    assert document.body == {
        "base": {"role": "Reader"},
        "grant": {"role": "Reader", "scope": "x"},
        1: "one",
        "1": "text",
    }


def test_an_unhashable_yaml_key_is_still_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "configs.yaml"
    path.write_text("? [a, b]\n: value\n")
    assert "unhashable key" in problems_of(path)


def config_body(display_name: str) -> dict[str, object]:
    return {
        "apiVersion": "wif-reconciler/v1",
        "kind": "FederationConfig",
        "organization": "contoso",
        "project": "identity",
        "tenantId": "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0",
        "serviceConnection": {
            "name": "deploy",
            "subscriptionId": "11111111-2222-3333-4444-555555555555",
            "subscriptionName": "Prod",
        },
        "application": {"displayName": display_name, "create": True},
        "roleAssignments": [{"role": "Key Vault Reader", "scope": VAULT}],
    }


@pytest.mark.parametrize(
    "look_alike",
    [
        "sc-payments-created\u200b",  # zero-width space: renders as the victim's app name
        "sc-payments-\u202edetaerc",  # right-to-left override: renders as "...-created"
        "sc-payments-created\x7f",  # DEL
        "sc-payments\x85-created",  # C1 next line
        "\uff53\uff43-payments-created",  # fullwidth letters
        "sc-payments\u2011created",  # non-breaking hyphen: NFKC folds it into '-'
        "sc-payments-created\u00a0x",  # no-break space
    ],
)
def test_an_application_display_name_cannot_look_like_another(look_alike: str) -> None:
    """The reconciler creates the app under this name: a look-alike of another project's app name is
    an app an administrator cannot tell apart (consent, role reviews, sign-in logs)."""
    config, problems = parse_config(Document("ticket", 1, config_body(look_alike)))
    assert config is None
    assert [p.field for p in problems] == ["application.displayName"]


def test_an_ordinary_display_name_is_still_accepted() -> None:
    config, problems = parse_config(Document("ticket", 1, config_body("SC Payments: Créé (prod)")))
    assert problems == [] and config is not None
    assert config.application.display_name == "SC Payments: Créé (prod)"


def test_a_yaml_tag_that_constructs_python_objects_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "configs.yaml"
    path.write_text("id: !!python/object/apply:os.system ['touch owned']\n")
    assert "could not determine a constructor" in problems_of(path)
    assert not (tmp_path / "owned").exists() and not Path("owned").exists()
