"""Config files are read by libyaml (PyYAML's C loader) when that is safe, with the same result and
the same refusals as the bounded loader (issue 12: 5,000 configs load in well under a second)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cloudsim.generate import generate_tenant
from reconciler import documents
from reconciler.documents import MAX_FILE_DEPTH, InputError, load_configs, read_documents

VARIED = """\
a: 1
b: [1, 2.5, true, null, 2020-01-01, '007', "x: y"]
c: {x: y, 3: three}
d: !!binary aGVsbG8=
e: |
  two
  lines
---
---
- nested: [[1, [2, {deep: true}]]]
"""


def bounded(text: str) -> list[object]:
    return list(yaml.load_all(text, Loader=documents._BoundedLoader))


@pytest.mark.parametrize("text", [VARIED, generate_tenant(configs=50, unmanaged_apps=0).configs_yaml()])
def test_the_c_loader_reads_what_the_bounded_loader_reads(text: str) -> None:
    fast = documents._fast_yaml_documents(text)
    assert fast is not None  # nothing in these needs the bounded loader
    assert fast == bounded(text)


@pytest.mark.parametrize(
    "text",
    [
        "a: 1\na: 2\n",  # a key twice
        "<<: {a: 1}\nb: 2\n",  # a merge key
        "- !!set {a, b}\n",  # a collection tag
        "x: !foo bar\n",  # a tag of no constructor
        "base: &b {a: 1}\nuse: *b\n",  # an anchor: aliases are counted by the bounded loader
        "- " * MAX_FILE_DEPTH + "x\n",  # one level too deep
        "[" * 2000 + "]" * 2000,  # past libyaml's own limit
    ],
)
def test_what_the_c_loader_cannot_vouch_for_goes_to_the_bounded_loader(text: str) -> None:
    assert documents._fast_yaml_documents(text) is None


def test_the_depth_limit_is_counted_as_the_bounded_loader_counts(tmp_path: Path) -> None:
    deepest = tmp_path / "deepest.yaml"
    deepest.write_text("- " * (MAX_FILE_DEPTH - 1) + "x\n")
    assert documents._fast_yaml_documents(deepest.read_text()) is not None
    assert len(read_documents(deepest)) == 1
    deeper = tmp_path / "deeper.yaml"
    deeper.write_text("- " * MAX_FILE_DEPTH + "x\n")
    with pytest.raises(
        InputError, match=rf"deeper.yaml: not valid YAML: .*nested more than {MAX_FILE_DEPTH} deep"
    ):
        read_documents(deeper)


def test_a_key_twice_is_refused_with_its_line_as_before(tmp_path: Path) -> None:
    path = tmp_path / "twice.yaml"
    path.write_text("apiVersion: wif-reconciler/v1\nkind: FederationConfig\nkind: FederationConfig\n")
    with pytest.raises(InputError) as refused:
        read_documents(path)
    assert "twice.yaml: not valid YAML" in str(refused.value)
    assert "'kind' appears twice" in str(refused.value) and "line 3" in str(refused.value)


def test_generated_configs_load_and_validate(tmp_path: Path) -> None:
    path = tmp_path / "configs.yaml"
    path.write_text(generate_tenant(configs=200, unmanaged_apps=0).configs_yaml())
    assert len(load_configs([path])) == 200
