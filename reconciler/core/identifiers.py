"""Identifiers that cross the trust boundary, each parsed by one rule into a canonical, immutable value.

Everything that names something in Azure, Entra or Azure DevOps (an ARM scope, an ADO
organization, project or connection, a GUID, a federated credential name) and the
reconciler's own ids (config ids, request ids) is parsed here, once, where input enters:
a config file, a ticket, a table row, an HTTP route. A value that parses is canonical (one
spelling per thing, so string equality is identity), and its canonical text parses back to
itself. Anything else raises IdentifierError naming the field. docs/security.md lists each
rule, where it comes from, and its tests.

Why so strict: these strings end up in URL paths. An HTTP client collapses `..`, decodes
`%2F` or folds `\\` to `/`, so a scope that *looked* like a resource group could land on a
whole subscription. The rules below admit only names, never path syntax, and never a
character whose Unicode compatibility form is a different character (the fullwidth solidus U+FF0F for `/`).

The name values are `str` subclasses: constructing one runs its rule
(`OrganizationName("../x")` raises). The model stores `str(value)`, plain text in canonical
form, because some SDKs (Azure Tables) refuse str subclasses.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

GUID_EXAMPLE = "00000000-0000-0000-0000-000000000000"
MAX_SCOPE_LENGTH = 1024  # the ticket schema's bound on a scope; ARM ids are far shorter in practice
MAX_CONFIG_ID_LENGTH = 200
_RESERVED_DEVICE_NAMES = {"PRN", "NUL", "CON", "AUX", *(f"COM{i}" for i in range(1, 11))} | {
    f"LPT{i}" for i in range(1, 10)
}
# ADO: "Must not be a system-reserved name" and "must not be one of the hidden segments used
# for IIS request filtering" (Azure DevOps naming restrictions, Project names).
_RESERVED_PROJECT_NAMES = frozenset(
    name.lower()
    for name in (
        *_RESERVED_DEVICE_NAMES,
        "SERVER",
        "SignalR",
        "DefaultCollection",
        "Web",
        "App_Browsers",
        "App_code",
        "App_Data",
        "App_GlobalResources",
        "App_LocalResources",
        "App_Themes",
        "App_WebResources",
        "bin",
        "web.config",
    )
)
_ADO_FORBIDDEN = set("/:\\~&%;@'\"?<>|#$*}{,+=[]")
# Control, format (zero-width, bidi overrides), surrogate, private-use, unassigned, line and
# paragraph separators: invisible or ambiguous in a name.
_FORBIDDEN_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}
_PRINTABLE_ASCII = re.compile(r"[\x21-\x7e]*")  # no spaces or control characters


class IdentifierError(ValueError):
    """Input that is not a valid identifier; the message names the field and what is expected."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


class _Name(str):
    """A str that can only be made by its rule: `Kind(text, field)` parses or raises."""

    what: ClassVar[str] = ""  # what is expected, for messages
    max_length: ClassVar[int] = 256
    rule: ClassVar[re.Pattern[str] | None] = None  # the whole text must match, when given

    def __new__(cls, text: object, field: str = "") -> _Name:
        field = field or cls.__name__
        if not isinstance(text, str):
            raise IdentifierError(field, f"expected {cls.what}, got {type(text).__name__}")
        if not text or len(text) > cls.max_length:  # before any scan: bounded work on hostile input
            raise IdentifierError(
                field, f"expected {cls.what}; it is empty or longer than {cls.max_length} characters"
            )
        problem = cls._problem(text)
        if problem is not None:
            detail = f"; {problem}" if problem else ""
            raise IdentifierError(field, f"expected {cls.what}{detail}, got {_shown(text)}")
        return super().__new__(cls, cls._canonical(text))

    @classmethod
    def _problem(cls, text: str) -> str | None:
        """Why `text` breaks the rule ("" when `what` says it all), or None when it does not."""
        if cls.rule is not None and not cls.rule.fullmatch(text):  # fullmatch: no '$'-before-newline
            return ""
        return None

    @classmethod
    def _canonical(cls, text: str) -> str:
        return text

    @classmethod
    def is_valid(cls, text: object) -> bool:
        try:
            cls(text)
        except IdentifierError:
            return False
        return True


class Guid(_Name):
    """A GUID in its 8-4-4-4-12 form; canonical in lower case (Azure compares GUIDs case-insensitively)."""

    what = f"a GUID like {GUID_EXAMPLE}"
    max_length = 36
    rule = re.compile(r"[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}")

    @classmethod
    def _canonical(cls, text: str) -> str:
        return text.lower()


class OrganizationName(_Name):
    """ADO: English letters, digits and '-', starting and ending with a letter or digit, at most 50."""

    what = "an Azure DevOps organization name (letters, digits, '-'; starts and ends with a letter or digit)"
    max_length = 50
    rule = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?")


def _unicode_problem(text: str) -> str | None:
    """Text that renders ambiguously: invisible characters, or a compatibility form of another character."""
    if text.isascii() and text.isprintable():  # the common case, in linear time: none of the below
        return "it starts or ends with a space" if text != text.strip() else None
    if unicodedata.normalize("NFC", text) != text:  # as macOS and some keyboards write accents
        return (
            "it is not in Unicode's composed form (NFC): a letter and a separate combining accent, "
            "which reads like the composed letter but is another name; write the composed letter"
        )
    if unicodedata.normalize("NFKC", text) != text:
        return "it holds compatibility characters that Unicode folds into others (like U+FF0F for '/')"
    for char in text:
        if unicodedata.category(char) in _FORBIDDEN_CATEGORIES:
            return f"it holds the invisible or control character U+{ord(char):04X}"
        if char.isspace() and char != " ":
            return f"it holds the whitespace character U+{ord(char):04X}"
    if text != text.strip():
        return "it starts or ends with a space"
    return None


class ProjectName(_Name):
    """ADO's project-name rule (Azure DevOps naming restrictions, Project names)."""

    what = "an Azure DevOps project name"
    max_length = 64

    @classmethod
    def _problem(cls, text: str) -> str | None:
        forbidden = sorted(_ADO_FORBIDDEN.intersection(text))
        if forbidden:
            return f"it holds {' '.join(forbidden)}, which Azure DevOps does not allow"
        if text.startswith(("_", ".")) or text.endswith("."):
            return "it starts with '_' or '.', or ends with '.'"
        if ".." in text:  # ADO's rule for collections and teams; a path step in any URL
            return "it holds '..'"
        if text.lower() in _RESERVED_PROJECT_NAMES:
            return "it is a name Azure DevOps reserves"
        return _unicode_problem(text)


class ConnectionName(_Name):
    """ADO service connection names: no control or surrogate characters (ADO's general rule), at most 256."""

    what = "a service connection name"
    max_length = 256

    @classmethod
    def _problem(cls, text: str) -> str | None:
        # Stricter than ADO: the name never enters a URL path, but a '.' or '..' segment in it
        # would become a path step the day it did (and no real connection needs one).
        if any(segment in {".", ".."} for segment in text.split("/")):
            return "it has a '.' or '..' segment"
        return _unicode_problem(text)


class ApplicationDisplayName(_Name):
    """The display name of an application the reconciler creates: at most 256 characters (Entra's
    limit), and the Unicode checks of project names, so that it cannot look like another app's name."""

    what = "an application display name"
    max_length = 256

    @classmethod
    def _problem(cls, text: str) -> str | None:
        return _unicode_problem(text)


class RequesterName(_Name):
    """A ticket's `requestedBy`, the audit trail's "who": free text of at most 256 characters with the
    Unicode checks of names, so that no line separator, bidi override or invisible character makes
    the record, or a log line quoting it, read as something else."""

    what = "a name or address of 1-256 printable characters, without spaces around it"
    max_length = 256

    @classmethod
    def _problem(cls, text: str) -> str | None:
        return _unicode_problem(text)


class CredentialName(_Name):
    """Entra's rule for federated identity credential names."""

    what = (
        "3-120 characters of letters, digits, '-' and '_', starting with a letter or digit "
        "(Entra's rule for federated credential names)"
    )
    max_length = 120
    rule = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{2,119}")


class ConfigId(_Name):
    """The reconciler's config id: lower-case '/'-separated segments, each starting with a letter or digit."""

    what = (
        "lower-case letters, digits, '.', '_', '-' in '/'-separated segments, "
        "each starting with a letter or digit"
    )
    max_length = MAX_CONFIG_ID_LENGTH
    rule = re.compile(r"[a-z0-9][a-z0-9._-]*(/[a-z0-9][a-z0-9._-]*)*")

    @classmethod
    def from_route(cls, raw: str, field: str = "config id") -> ConfigId:
        """An id from a URL path segment, which cannot hold '/': the API takes '~' (or %2F) instead."""
        return cls(raw.replace("%2F", "/").replace("%2f", "/").replace("~", "/"), field)

    @classmethod
    def derive(cls, organization: str, project: str, connection_name: str) -> ConfigId:
        """`{organization}/{project}/{connection}` lower-cased, runs of other characters folded to '-'."""
        segments = (
            re.sub(r"[^a-z0-9._]+", "-", s.lower()).strip("-._")
            for s in (organization, project, connection_name)
        )
        return cls("/".join(segments), "id")

    @property
    def row_key(self) -> str:
        """As an Azure Tables key: '/' is not allowed in keys, and '~' never occurs in ids."""
        return self.replace("/", "~")


class RequestId(_Name):
    """A ticket's or sweep's id: letters, digits, '.', '_', ':', '-', starting with a letter or digit."""

    what = "1-128 letters, digits, '.', '_', ':' or '-', starting with a letter or digit"
    max_length = 128
    rule = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]*")


# ---------------------------------------------------------------------------- ARM scopes

# ARM resource group names: letters, digits, '_', '(', ')', '-', '.', not ending in '.', 1-90.
# ARM also allows Unicode letters; these rules admit ASCII only, so that a policy literal and a
# scope can never look alike and differ (Cyrillic U+0430 against Latin 'a').
_ARM_NAME = re.compile(r"[A-Za-z0-9_().-]*[A-Za-z0-9_()-]")
_NAMESPACE = re.compile(r"[A-Za-z][A-Za-z0-9]*(\.[A-Za-z][A-Za-z0-9]*)+")
_RESOURCE_TYPE = re.compile(r"[A-Za-z][A-Za-z0-9]*")
_MAX_GROUP_NAME = 90  # resource groups and management groups
_MAX_RESOURCE_NAME = 260
_MAX_TYPE_NAME = 64
# Characters that are path or query syntax in some layer between here and ARM.
_SCOPE_SYNTAX = {"%": "percent-encoding", "\\": "'\\'", "?": "'?'", "#": "'#'"}
MANAGEMENT_NAMESPACE = "Microsoft.Management"


@dataclass(frozen=True)
class ArmScope:
    """A parsed ARM scope: a subscription, a resource group, a resource below either, or a management group.

    Names are kept in lower case (ARM compares them case-insensitively), the fixed keywords in
    ARM's casing, so `str(scope)` is one canonical spelling.
    """

    subscription: Guid | None = None
    resource_group: str | None = None
    management_group: str | None = None
    provider: str | None = None  # the resource provider namespace, e.g. microsoft.keyvault
    resources: tuple[tuple[str, str], ...] = ()  # (type, name) pairs, nested left to right

    @classmethod
    def parse(cls, text: object, field: str = "scope") -> ArmScope:
        segments = _scope_segments(text, field)
        return _ScopeReader(segments, field, text).scope()

    @property
    def segments(self) -> tuple[str, ...]:
        """The canonical path segments, keywords included."""
        if self.management_group is not None:
            return ("providers", MANAGEMENT_NAMESPACE, "managementGroups", self.management_group)
        parts: list[str] = ["subscriptions", str(self.subscription)]
        if self.resource_group is not None:
            parts += ["resourceGroups", self.resource_group]
        if self.provider is not None:
            parts += ["providers", self.provider]
            for kind, name in self.resources:
                parts += [kind, name]
        return tuple(parts)

    def __str__(self) -> str:
        return "/" + "/".join(self.segments)

    @property
    def root(self) -> ArmScope:
        """The subscription (or management group) the scope lies in."""
        if self.subscription is None:
            return self
        return ArmScope(subscription=self.subscription)


def _scope_segments(text: object, field: str) -> list[str]:
    if not isinstance(text, str):
        raise IdentifierError(field, f"expected an ARM scope, got {type(text).__name__}")
    if len(text) > MAX_SCOPE_LENGTH:
        raise IdentifierError(field, f"expected an ARM scope of at most {MAX_SCOPE_LENGTH} characters")
    for char, name in _SCOPE_SYNTAX.items():
        if char in text:
            raise IdentifierError(field, f"an ARM scope must not hold {name}, got {_shown(text)}")
    if not _PRINTABLE_ASCII.fullmatch(text):
        raise IdentifierError(
            field,
            f"an ARM scope holds only printable ASCII, no spaces or control characters, got {_shown(text)}",
        )
    if not text.startswith("/"):
        raise IdentifierError(field, f"an ARM scope starts with '/', got {_shown(text)}")
    segments = text[1:].split("/")
    if "" in segments:
        raise IdentifierError(
            field, f"an ARM scope has no empty segments ('//' or a trailing '/'), got {_shown(text)}"
        )
    if "." in segments or ".." in segments:
        raise IdentifierError(field, f"an ARM scope has no '.' or '..' segments, got {_shown(text)}")
    return segments


class _ScopeReader:
    """Reads segments left to right against ARM's grammar of scopes."""

    def __init__(self, segments: list[str], field: str, text: object) -> None:
        self.rest = list(segments)
        self.field = field
        self.text = text

    def fail(self, problem: str) -> IdentifierError:
        return IdentifierError(
            self.field,
            "expected an ARM scope such as /subscriptions/<guid>/resourceGroups/<name>"
            f"[/providers/<namespace>/<type>/<name>]; {problem}, got {_shown(self.text)}",
        )

    def take(self, what: str) -> str:
        if not self.rest:
            raise self.fail(f"{what} is missing")
        return self.rest.pop(0)

    def keyword(self, expected: str) -> None:
        found = self.take(f"'{expected}'")
        if found.lower() != expected.lower():
            raise self.fail(f"expected '{expected}' where it says {_shown(found)}")

    def name(self, what: str, pattern: re.Pattern[str], max_length: int) -> str:
        found = self.take(what)
        if len(found) > max_length or not pattern.fullmatch(found):
            raise self.fail(f"{_shown(found)} is not a valid {what}")
        return found.lower()

    def scope(self) -> ArmScope:
        first = self.take("'subscriptions' or 'providers'").lower()
        if first == "providers":
            return self.management_group()
        if first != "subscriptions":
            raise self.fail("it must start with /subscriptions/ or /providers/Microsoft.Management/")
        try:
            subscription = Guid(self.take("the subscription id"), self.field)
        except IdentifierError as error:
            raise self.fail("the subscription must be a GUID") from error
        if not self.rest:
            return ArmScope(subscription=subscription)
        group = None
        if self.rest[0].lower() == "resourcegroups":
            self.rest.pop(0)
            group = self.name("resource group name", _ARM_NAME, _MAX_GROUP_NAME)
            if not self.rest:
                return ArmScope(subscription=subscription, resource_group=group)
        self.keyword("providers")
        provider = self.name("resource provider namespace", _NAMESPACE, _MAX_TYPE_NAME)
        resources = self.resources()
        return ArmScope(
            subscription=subscription, resource_group=group, provider=provider, resources=resources
        )

    def resources(self) -> tuple[tuple[str, str], ...]:
        pairs: list[tuple[str, str]] = []
        while self.rest or not pairs:
            kind = self.name("resource type", _RESOURCE_TYPE, _MAX_TYPE_NAME)
            pairs.append((kind, self.name("resource name", _ARM_NAME, _MAX_RESOURCE_NAME)))
        return tuple(pairs)

    def management_group(self) -> ArmScope:
        self.keyword(MANAGEMENT_NAMESPACE)
        self.keyword("managementGroups")
        group = self.name("management group id", _ARM_NAME, _MAX_GROUP_NAME)
        if self.rest:
            raise self.fail("nothing may follow the management group id")
        return ArmScope(management_group=group)


@dataclass(frozen=True)
class ScopePattern:
    """A policy's allowed scope prefix; a `*` segment matches exactly one segment of a parsed scope.

    Literal segments obey the scope's segment rules (no '..', no encodings), so a pattern
    itself cannot smuggle path syntax; they compare case-insensitively, as ARM does.
    """

    pattern: str
    segments: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        segments = _scope_segments(self.pattern, "scope pattern")
        problem = _pattern_problem(segments)
        if problem is not None:
            raise IdentifierError("scope pattern", f"{problem}, got {_shown(self.pattern)}")
        object.__setattr__(self, "segments", tuple(s if s == "*" else s.lower() for s in segments))

    def covers(self, scope: ArmScope | str) -> bool:
        """Whether `scope` lies at or below the pattern; text that is not a scope is never covered."""
        if isinstance(scope, str):
            try:
                scope = ArmScope.parse(scope)
            except IdentifierError:
                return False
        actual = scope.segments
        if len(actual) < len(self.segments):
            return False
        return all(p == "*" or p == a.lower() for p, a in zip(self.segments, actual, strict=False))


def _pattern_problem(segments: list[str]) -> str | None:
    """Why a pattern's segments are not a prefix of ARM's scope grammar with `*` for whole names,
    or None. A pattern outside the grammar could never cover a scope (a typo, a glob inside a
    name), and a `*` for a keyword covers more kinds of scope than it reads as."""

    def keyword(position: int, *expected: str) -> str | None:
        found = segments[position]
        if found == "*":
            return f"'*' stands for a name, not for the keyword {' or '.join(map(repr, expected))}"
        if found.lower() not in {e.lower() for e in expected}:
            return f"expected {' or '.join(map(repr, expected))} where it says {_shown(found)}"
        return None

    def name(position: int, what: str, valid: Callable[[str], bool]) -> str | None:
        found = segments[position]
        if found == "*" or valid(found):
            return None
        if "*" in found:
            return f"'*' stands for a whole name ({what}), it is no glob inside one: {_shown(found)}"
        return f"{_shown(found)} is not a valid {what}"

    def matching(pattern: re.Pattern[str], max_length: int) -> Callable[[str], bool]:
        return lambda text: len(text) <= max_length and pattern.fullmatch(text) is not None

    arm_name = matching(_ARM_NAME, _MAX_GROUP_NAME)
    steps: list[Callable[[int], str | None]] = [lambda n: keyword(n, "subscriptions", "providers")]
    if segments[0].lower() == "providers":
        steps += [
            lambda n: keyword(n, MANAGEMENT_NAMESPACE),
            lambda n: keyword(n, "managementGroups"),
            lambda n: name(n, "management group id", arm_name),
        ]
    else:
        steps.append(lambda n: name(n, "subscription id (a GUID)", Guid.is_valid))
        if len(segments) > 2 and segments[2].lower() == "resourcegroups":
            steps += [
                lambda n: keyword(n, "resourceGroups"),
                lambda n: name(n, "resource group name", arm_name),
            ]
        keywords = ("resourceGroups", "providers") if len(steps) == 2 else ("providers",)
        steps += [
            lambda n: keyword(n, *keywords),
            lambda n: name(n, "resource provider namespace", matching(_NAMESPACE, _MAX_TYPE_NAME)),
        ]
        pair = [
            lambda n: name(n, "resource type", matching(_RESOURCE_TYPE, _MAX_TYPE_NAME)),
            lambda n: name(n, "resource name", matching(_ARM_NAME, _MAX_RESOURCE_NAME)),
        ]
        steps += pair * max(0, (len(segments) - len(steps) + 1) // 2)
    if len(segments) > len(steps):
        return "nothing may follow the management group id"
    for position, step in enumerate(steps[: len(segments)]):
        problem = step(position)
        if problem is not None:
            return f"segment {position + 1}: {problem}"
    return None


_SCOPE_KEYWORDS = frozenset({"subscriptions", "resourceGroups", "providers", "managementGroups"})


def spelled_scope(text: str) -> str:
    """A valid scope in the canonical form, but with its names in the case they were written.

    ARM compares scopes case-insensitively and keeps names as written: the keywords and the
    subscription id take the canonical spelling, resource groups, providers, types and names
    the author's, so an exported config reads as it was written. Raises IdentifierError as parse.
    """
    canonical = ArmScope.parse(text).segments
    written = text[1:].split("/")
    if len(written) != len(canonical):  # not expected: the grammar maps segments one to one
        return "/" + "/".join(canonical)
    keep = {index for index, segment in enumerate(canonical) if segment in _SCOPE_KEYWORDS}
    if canonical[0] == "subscriptions":
        keep.add(1)  # a GUID: lower case, as every GUID here
    if canonical[:2] == ("providers", MANAGEMENT_NAMESPACE):
        keep.add(1)
    pairs = enumerate(zip(canonical, written, strict=True))
    return "/" + "/".join(ours if index in keep else theirs for index, (ours, theirs) in pairs)


def canonical_scope(text: str) -> str:
    """A scope as ARM reported it, in canonical form when it parses, else just lower-cased.

    For observed data only: ARM may report scopes outside the grammar above (the root `/`,
    say), and those must still be shown and compared, never rejected.
    """
    try:
        return str(ArmScope.parse(text))
    except IdentifierError:
        return "/" + text.strip().strip("/").lower()
