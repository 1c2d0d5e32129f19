"""Built-in Azure role definitions the reconciler knows by name, and the privileged-role rule.

The ids are Azure's fixed built-in role definition GUIDs (the same in every tenant and
cloud). The actions are the parts of each definition that matter to the privileged
check: a role is privileged when it can write role assignments, because such a
principal could grant itself anything.
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase

ROLE_ASSIGNMENT_WRITE = "Microsoft.Authorization/roleAssignments/write"


@dataclass(frozen=True)
class RoleDefinition:
    """The parts of an Azure role definition the policy reasons about."""

    id: str  # the role definition GUID, lower case
    name: str
    actions: tuple[str, ...] = ()
    not_actions: tuple[str, ...] = ()

    @property
    def can_write_role_assignments(self) -> bool:
        """True when the definition grants Microsoft.Authorization/roleAssignments/write."""
        return grants(self.actions, self.not_actions, ROLE_ASSIGNMENT_WRITE)


def grants(actions: tuple[str, ...], not_actions: tuple[str, ...], operation: str) -> bool:
    """Whether ARM action patterns allow `operation` (case-insensitive, `*` wildcards)."""
    wanted = operation.lower()
    allowed = any(fnmatchcase(wanted, pattern.lower()) for pattern in actions)
    denied = any(fnmatchcase(wanted, pattern.lower()) for pattern in not_actions)
    return allowed and not denied


_READ_ALL = ("*/read",)

BUILTIN_ROLES: tuple[RoleDefinition, ...] = (
    RoleDefinition("8e3af657-a8ff-443c-a75c-2fe8c4bcb635", "Owner", ("*",)),
    RoleDefinition(
        "b24988ac-6180-42a0-ab88-20f7382dd24c",
        "Contributor",
        ("*",),
        (
            "Microsoft.Authorization/*/Delete",
            "Microsoft.Authorization/*/Write",
            "Microsoft.Authorization/elevateAccess/Action",
            "Microsoft.Blueprint/blueprintAssignments/write",
            "Microsoft.Blueprint/blueprintAssignments/delete",
            "Microsoft.Compute/galleries/share/action",
        ),
    ),
    RoleDefinition("acdd72a7-3385-48ef-bd42-f606fba81ae7", "Reader", _READ_ALL),
    RoleDefinition(
        "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9",
        "User Access Administrator",
        ("*/read", "Microsoft.Authorization/*", "Microsoft.Support/*"),
    ),
    RoleDefinition(
        "f58310d9-a9f6-439a-9e8d-f62e7b41a168",
        "Role Based Access Control Administrator",
        (
            "Microsoft.Authorization/roleAssignments/write",
            "Microsoft.Authorization/roleAssignments/delete",
            "*/read",
            "Microsoft.Support/*",
        ),
    ),
    RoleDefinition("21090545-7ca7-4776-b22c-e363652d74d2", "Key Vault Reader", _READ_ALL),
    RoleDefinition("4633458b-17de-408a-b874-0445c86b69e6", "Key Vault Secrets User", ()),
    RoleDefinition("b86a8fe4-44ce-4948-aee5-eccb2c155cd7", "Key Vault Secrets Officer", _READ_ALL),
    RoleDefinition("12338af0-0e69-4776-bea7-57ae8d297424", "Key Vault Crypto User", ()),
    RoleDefinition("a4417e6f-fecd-4de8-b567-7b0420556985", "Key Vault Certificates Officer", _READ_ALL),
    RoleDefinition("00482a5a-887f-4fb3-b363-3b7fe8e74483", "Key Vault Administrator", _READ_ALL),
    RoleDefinition("2a2b9908-6ea1-4ae2-8e65-a410df84e7d1", "Storage Blob Data Reader", ()),
    RoleDefinition("ba92f5b4-2d11-453d-a403-e96b0029c9fe", "Storage Blob Data Contributor", ()),
    RoleDefinition("7f951dda-4ed3-4680-a7ca-43fe172d538d", "AcrPull", ()),
    RoleDefinition("8311e382-0749-4cb8-b61a-304f252e45ec", "AcrPush", ()),
    RoleDefinition("de139f84-1756-47ae-9be6-808fbbe84772", "Website Contributor", _READ_ALL),
)

_BY_NAME = {role.name.lower(): role for role in BUILTIN_ROLES}
_BY_ID = {role.id: role for role in BUILTIN_ROLES}


def builtin_role(name_or_id: str) -> RoleDefinition | None:
    """The built-in role with this display name (case-insensitive) or GUID, if known."""
    key = name_or_id.strip().lower()
    return _BY_ID.get(key) or _BY_NAME.get(key)
