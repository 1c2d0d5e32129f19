"""Reading config, policy and snapshot files: YAML (several documents per file) or JSON.

This is the only place that parses files; the core validates the parsed values.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import yaml

from reconciler.core.model import FederationConfig
from reconciler.core.policy import GrantPolicy, parse_policy
from reconciler.core.validation import Document, Problem, parse_configs

MAX_FILE_BYTES = 16 * 1024 * 1024  # a desired-state file of 20,000 configs is about 10 MB


class InputError(Exception):
    """Input that cannot be used; carries every problem found."""

    def __init__(self, problems: Iterable[Problem | str]) -> None:
        self.problems = [str(p) for p in problems]
        super().__init__("\n".join(self.problems))


def read_documents(path: Path) -> list[Document]:
    """The documents of a YAML or JSON file, numbered from 1."""
    source = str(path)
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise InputError([f"{source}: larger than {MAX_FILE_BYTES // (1024 * 1024)} MB"])
        text = path.read_text(encoding="utf-8-sig")
    except OSError as error:
        raise InputError([f"{source}: cannot read: {error.strerror or error}"]) from error
    except UnicodeDecodeError as error:
        raise InputError([f"{source}: not UTF-8 text ({error.reason})"]) from error
    try:
        bodies = [json.loads(text)] if path.suffix == ".json" else list(yaml.safe_load_all(text))
    except (yaml.YAMLError, json.JSONDecodeError) as error:
        raise InputError(
            [f"{source}: not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {error}"]
        ) from error
    return [Document(source, index, body) for index, body in enumerate(bodies, start=1) if body is not None]


def load_configs(paths: Iterable[Path]) -> list[FederationConfig]:
    """Every config in the files, validated together (ids and shared apps span files)."""
    documents: list[Document] = []
    problems: list[Problem | str] = []
    for path in paths:
        try:
            documents.extend(read_documents(path))
        except InputError as error:
            problems.extend(error.problems)
    configs, found = parse_configs(documents)
    problems.extend(found)
    if problems:
        raise InputError(problems)
    return configs


def load_policy(path: Path) -> GrantPolicy:
    documents = read_documents(path)
    if len(documents) != 1:
        raise InputError([f"{path}: expected exactly one GrantPolicy document, found {len(documents)}"])
    policy, problems = parse_policy(documents[0])
    if policy is None:
        raise InputError(problems)
    return policy
