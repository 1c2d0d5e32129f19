"""Findings of the adversarial review of 2026-12-04 (docs/security.md, "Adversarial review"):
each test is an attack that worked on main before its fix, or proves that one did not.
"""

from __future__ import annotations

from pathlib import Path

import pytest

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
