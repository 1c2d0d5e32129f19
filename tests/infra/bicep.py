"""Reading infra/ for the tests: the Bicep files through pycep-parser, a PyPI Bicep parser.

pycep turns a Bicep file into nested dicts: `parameters`, `variables`, `resources`,
`modules`, each entry's body under `config`. Two quirks the helpers here absorb:

- a loop (`[for x in xs: {...}]`) or a condition (`if (c) {...}`) wraps the body once more,
  as `{"loop_type": ..., "condition": ..., "config": body}`; `body()` unwraps it;
- a plain identifier (a reference to a parameter or variable) and a string literal both
  come out as a Python `str`; `resolve()` looks a string up among the file's parameters
  and variables and returns the default or value when it names one.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, cast

from pycep import BicepParser

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"

Node = dict[str, Any]


@cache
def parse(relative: str) -> Node:
    """The parsed form of infra/<relative>; raises if pycep cannot parse it."""
    return cast(Node, BicepParser().parse(file_path=INFRA / relative))


def bicep_files() -> list[str]:
    """Every Bicep file under infra/, relative to infra/ (POSIX separators)."""
    return sorted(path.relative_to(INFRA).as_posix() for path in INFRA.rglob("*.bicep"))


def load_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def body(entry: Node) -> Node:
    """The body of a resource or module entry, with a loop or condition wrapper removed."""
    config = cast(Node, entry["config"])
    if "config" in config and set(config) <= {"loop_type", "condition", "config"}:
        return cast(Node, config["config"])
    return config


@dataclass(frozen=True)
class Resource:
    """One `resource` declaration of a Bicep file."""

    file: str
    symbol: str
    type: str
    body: Node
    existing: bool


def resources(relative: str) -> list[Resource]:
    doc = parse(relative)
    return [
        Resource(relative, symbol, entry["type"], body(entry), bool(entry.get("existing")))
        for symbol, entry in doc.get("resources", {}).items()
    ]


def all_resources() -> Iterator[Resource]:
    for relative in bicep_files():
        yield from resources(relative)


def resource(relative: str, symbol: str) -> Resource:
    matches = [found for found in resources(relative) if found.symbol == symbol]
    assert matches, f"infra/{relative} declares no resource `{symbol}`"
    return matches[0]


def of_type(relative: str, resource_type: str) -> list[Resource]:
    return [found for found in resources(relative) if found.type == resource_type]


def path(node: Any, dotted: str) -> Any:
    """node[a][b][c] for dotted 'a.b.c', failing with the missing key's path."""
    current = node
    for key in dotted.split("."):
        assert isinstance(current, dict) and key in current, f"missing `{dotted}` (at `{key}`)"
        current = current[key]
    return current


def resolve(relative: str, value: Any) -> Any:
    """A parameter's default or a variable's value when `value` names one, else `value`."""
    doc = parse(relative)
    if isinstance(value, str):
        if value in doc.get("parameters", {}):
            return doc["parameters"][value]["default"]
        if value in doc.get("variables", {}):
            return doc["variables"][value]["value"]
    return value


def render(expression: Any) -> str:
    """A short Bicep-like rendering of an expression, for comparisons such as `a.b.c`."""
    if isinstance(expression, dict):
        if "operator" in expression:
            operator = expression["operator"]
            operands = operator["operands"]
            if operator["type"] == "property_accessor":
                return f"{render(operands['operand_1'])}.{render(operands['operand_2'])}"
            return f"{operator['type']}({', '.join(render(o) for o in operands.values())})"
        if "function" in expression:
            function = expression["function"]
            arguments = ", ".join(render(a) for a in function.get("parameters", {}).values() if a is not None)
            return f"{function['type']}({arguments})"
    return str(expression)


def app_settings() -> dict[str, Any]:
    """The Function App's app settings (name -> value expression) from its Bicep."""
    site = resource("app/function-app.bicep", "functionApp")
    settings = path(site.body, "properties.siteConfig.appSettings")
    names = [setting["name"] for setting in settings]
    assert len(names) == len(set(names)), f"duplicate app settings: {sorted(names)}"
    return {setting["name"]: setting["value"] for setting in settings}
