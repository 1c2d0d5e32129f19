"""Reading config, policy and snapshot files: YAML (several documents per file) or JSON.

This is the only place that parses files; the core validates the parsed values. A file is
outside input like a ticket, so its size is checked before it is read, its nesting depth before
it is parsed, and YAML aliases may not expand it beyond a small budget (a "billion laughs"
file of a few lines would otherwise become gigabytes of values and of error text).
"""

from __future__ import annotations

import json
import re
from collections.abc import Hashable, Iterable, Iterator
from pathlib import Path
from typing import Any, cast

import yaml

from reconciler.core.model import FederationConfig
from reconciler.core.policy import GrantPolicy, parse_policy
from reconciler.core.validation import Document, Problem, parse_configs

MAX_FILE_BYTES = 16 * 1024 * 1024  # a desired-state file of 20,000 configs is about 10 MB
MAX_FILE_DEPTH = 32  # a config nests 4 deep, a snapshot 6: far below the parsers' recursion limits
MAX_ALIAS_NODES = 10_000  # YAML nodes that aliases may add to a file (sharing a few lists is fine)
MAX_PROBLEM_CHARS = 1_000  # a problem quotes the value it is about, which may be megabytes
MAX_PROBLEMS = 1_000  # a file that is wrong everywhere needs no more to be fixed
MAX_INTEGER_DIGITS = 18  # JSON integers: beyond 2**53 other parsers round, and no field needs more


class InputError(Exception):
    """Input that cannot be used; carries every problem found."""

    def __init__(self, problems: Iterable[Problem | str]) -> None:
        every = [str(p) for p in problems]
        self.problems = [_shortened(p, MAX_PROBLEM_CHARS) for p in every[:MAX_PROBLEMS]]
        if len(every) > MAX_PROBLEMS:
            self.problems.append(f"... and {len(every) - MAX_PROBLEMS} more problems")
        super().__init__("\n".join(self.problems))


def read_documents(path: Path) -> list[Document]:
    """The documents of a YAML or JSON file, numbered from 1."""
    return parse_documents(read_bounded(path), path)


def read_bounded(path: Path) -> bytes:
    """The file's bytes, at most MAX_FILE_BYTES. Read once: a pipe gives its bytes only once, and a
    file read twice may have changed in between (what was validated must be what is used)."""
    try:
        # Read at most one byte past the limit: a pipe, /dev/zero or a file still growing says
        # size 0 (or less than it holds) to stat(), and would otherwise be read until memory runs out.
        with path.open("rb") as file:
            data: bytes = file.read(MAX_FILE_BYTES + 1)
    except OSError as error:
        raise InputError([f"{path}: cannot read: {error.strerror or error}"]) from error
    if len(data) > MAX_FILE_BYTES:
        raise InputError([f"{path}: larger than {MAX_FILE_BYTES // (1024 * 1024)} MB"])
    return data


def parse_documents(data: bytes, path: Path) -> list[Document]:
    """The documents in a file's bytes: JSON when its name ends in .json, else YAML."""
    source = str(path)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise InputError([f"{source}: not UTF-8 text ({error.reason})"]) from error
    bodies = _json_documents(text, source) if path.suffix == ".json" else _yaml_documents(text, source)
    return [Document(source, index, body) for index, body in enumerate(bodies, start=1) if body is not None]


def _json_documents(text: str, source: str) -> list[Any]:
    depth = json_nesting_depth(text.encode("utf-8", "surrogatepass"))
    if depth > MAX_FILE_DEPTH:
        raise InputError([f"{source}: nested {depth} deep, at most {MAX_FILE_DEPTH} allowed"])
    try:
        return [strict_json_loads(text)]  # as tickets: a key twice is refused, not read as its last value
    except ValueError as error:  # JSONDecodeError, DuplicateKey, NaN, overlong numbers
        raise InputError([f"{source}: not valid JSON: {error}"]) from error


def _yaml_documents(text: str, source: str) -> list[Any]:
    fast = _fast_yaml_documents(text)
    if fast is not None:
        return fast
    try:
        return list(yaml.load_all(text, Loader=_BoundedLoader))  # a SafeLoader: plain data only
    except yaml.YAMLError as error:
        if isinstance(error, yaml.MarkedYAMLError):  # name the file, not the parser's "<unicode string>"
            for mark in (error.context_mark, error.problem_mark):
                if mark is not None:
                    mark.name = source
        raise InputError(
            [f"{source}: not valid YAML: {_shortened(str(error), MAX_PROBLEM_CHARS)}"]
        ) from error


def _fast_yaml_documents(text: str) -> list[Any] | None:
    """The documents by libyaml (PyYAML's C loader, ten times faster), when that is safe; None to
    let the bounded loader read the file, which it then accepts or refuses as it always does.

    Safe means: no anchor (`&`) anywhere, so no alias can expand the file (libyaml refuses more
    than 1,000 levels of nesting itself, so its composer's recursion stays bounded). Anything
    either refuses or leaves in doubt (too deep, a key twice, a merge key or a special tag) goes
    to the bounded loader, which accepts or refuses it as always, its message naming the line.
    """
    if _CLoader is None or "&" in text:
        return None
    loader = _CLoader(text)
    bodies: list[Any] = []
    try:
        while loader.check_node():
            body = _constructed(loader, loader.get_node())
            if body is _REFUSED:
                return None
            bodies.append(body)
    except (yaml.YAMLError, RecursionError):
        return None
    finally:
        loader.dispose()
    return bodies


_REFUSED: Any = object()  # what _constructed answers for a document the bounded loader must read
_STR_TAG = "tag:yaml.org,2002:str"
_PLAIN_COLLECTIONS = frozenset({"tag:yaml.org,2002:seq", "tag:yaml.org,2002:map"})


def _constructed(loader: yaml.constructor.SafeConstructor, root: yaml.Node | None) -> Any:
    """The value of a composed document, as the safe constructor builds it, without recursion; or
    _REFUSED when it nests deeper than MAX_FILE_DEPTH (counted as the bounded loader counts: a
    scalar is one level), repeats a key or uses a merge key (`<<`: left to the bounded loader).
    Strings, nearly every scalar, are taken as they are; other scalars go to the constructor."""
    if root is None:
        return None
    result: list[Any] = []
    # (node, depth, where the value goes: a list to append to, or a dict and the key to set)
    pending: list[tuple[yaml.Node, int, Any, Any]] = [(root, 1, result, None)]
    while pending:
        node, depth, into, key = pending.pop()
        if depth > MAX_FILE_DEPTH:
            return _REFUSED
        if isinstance(node, yaml.ScalarNode):
            value = node.value if node.tag == _STR_TAG else loader.construct_object(node, deep=True)
        elif node.tag not in _PLAIN_COLLECTIONS:  # !!set, !!omap, !!pairs or a tag of no constructor
            return _REFUSED
        elif isinstance(node, yaml.SequenceNode):
            value = [None] * len(node.value)
            pending.extend((child, depth + 1, value, index) for index, child in enumerate(node.value))
        else:
            value = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                    return _REFUSED
                name = key_node.value if key_node.tag == _STR_TAG else loader.construct_object(key_node)
                if name in value:
                    return _REFUSED
                value[name] = None
                pending.append((value_node, depth + 1, value, name))
        if key is None and into is result:
            result.append(value)
        else:
            into[key] = value
    return result[0]


class _UniqueKeys(yaml.constructor.SafeConstructor):
    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        """A key written twice is refused: PyYAML keeps the last value, while a reviewer reads the
        first (a second `scope:` under a grant would be a grant nobody reviewed). Merge keys (`<<`)
        are not duplicates: keys written in the mapping override merged ones, as YAML says."""
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, Hashable):
                continue  # PyYAML refuses it below
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice", key_node.start_mark
                )
            seen.add(key)
        return cast(dict[Any, Any], super().construct_mapping(node, deep=deep))


class _BoundedLoader(_UniqueKeys, yaml.SafeLoader):
    """PyYAML's safe loader with a nesting limit and a budget for what aliases add.

    The composer recurses once per nesting level (deep nesting would exhaust Python's stack),
    and an alias stands for its whole anchored node: nine lines of ten aliases each stand for
    a billion nodes. Every composed node's size, aliases expanded, is counted as it is
    finished, so the budget is checked in linear time, before anything is constructed.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._alias_nodes = 0
        self._sizes: dict[int, int] = {}  # id(node) -> nodes it stands for, aliases expanded

    def compose_document(self) -> yaml.Node | None:
        self._sizes = {}  # ids are only unique among live nodes: one document's at a time
        return super().compose_document()

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        event: yaml.Event = self.peek_event()  # type: ignore[no-untyped-call]
        if isinstance(event, yaml.AliasEvent):
            target = self.anchors.get(event.anchor or "")
            if target is not None and id(target) not in self._sizes:  # still being composed
                raise _refused(f"alias *{event.anchor} refers to a node that contains it", event)
            self._alias_nodes += self._sizes.get(id(target), 0)
            if self._alias_nodes > MAX_ALIAS_NODES:
                raise _refused(f"aliases expand to more than {MAX_ALIAS_NODES} nodes", event)
            return cast(yaml.Node, super().compose_node(parent, index))
        self._depth += 1
        try:
            if self._depth > MAX_FILE_DEPTH:
                raise _refused(f"nested more than {MAX_FILE_DEPTH} deep", event)
            node = cast(yaml.Node, super().compose_node(parent, index))
        finally:
            self._depth -= 1
        self._sizes[id(node)] = 1 + sum(self._sizes.get(id(child), 1) for child in _children(node))
        return node


# libyaml's parser and composer with the safe constructor, when PyYAML was built with libyaml.
_CLoader: type[yaml.CSafeLoader] | None = getattr(yaml, "CSafeLoader", None)


def _refused(problem: str, event: yaml.Event) -> yaml.YAMLError:
    return yaml.composer.ComposerError(None, None, problem, cast(yaml.Mark, event.start_mark))


def _children(node: yaml.Node) -> Iterator[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        yield from node.value
    elif isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            yield key
            yield value


def json_nesting_depth(data: bytes) -> int:
    """The deepest bracket nesting of JSON text, without parsing it (so without recursion).

    One pass over the characters that matter (brackets, quotes, backslashes), found by a
    regex that cannot backtrack: linear whatever the text (an earlier regex over whole strings
    took 13 s on 64 KiB of unterminated escaped quotes).
    """
    depth = deepest = 0
    in_string = False
    skip_at = -1  # the position of a character a backslash escapes
    for match in _JSON_SIGNIFICANT.finditer(data):
        at, char = match.start(), match.group()
        if at == skip_at:
            continue
        if in_string:
            if char == b"\\":
                skip_at = at + 1
            elif char == b'"':
                in_string = False
        elif char == b'"':
            in_string = True
        elif char in b"[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in b"]}":
            depth -= 1
    return deepest


_JSON_SIGNIFICANT = re.compile(rb'[\[\]{}"\\]')


class DuplicateKey(ValueError):
    """JSON text with one key twice in an object: parsers disagree on which value wins."""

    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__(f"key {key!r} appears twice")


class NotText(ValueError):
    """JSON text whose strings are not Unicode text (a lone surrogate escape such as "\\ud800")."""


def strict_json_loads(text: str) -> Any:
    """`json.loads` refusing what parsers disagree on or what cannot be stored as text.

    Duplicate keys raise DuplicateKey; NaN and Infinity (not JSON), floats that overflow to
    infinity and integers of more than 18 digits (beyond what other parsers keep exactly) raise
    ValueError; a lone surrogate raises NotText. Check the depth first (`json_nesting_depth`):
    the C parser recurses per nesting level.
    """
    value = json.loads(
        text,
        object_pairs_hook=_unique_keys,
        parse_constant=_no_constant,
        parse_float=_finite_float,
        parse_int=_bounded_int,
    )
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as error:
        raise NotText("a string holds a lone surrogate") from error
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise DuplicateKey(key)
        result[key] = value
    return result


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):  # 1e400 parses as infinity
        raise ValueError(f"{_shortened(text, 40)} is out of range")
    return value


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INTEGER_DIGITS:
        raise ValueError(f"{_shortened(text, 40)} is out of range")
    return int(text)


def _shortened(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[: limit - 30]}... ({len(text)} characters in all)"


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
