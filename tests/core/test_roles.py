from reconciler.core.roles import BUILTIN_ROLES, builtin_role, grants


def test_privileged_roles_are_those_that_can_write_role_assignments() -> None:
    privileged = {role.name for role in BUILTIN_ROLES if role.can_write_role_assignments}
    assert privileged == {"Owner", "User Access Administrator", "Role Based Access Control Administrator"}


def test_contributor_is_not_privileged_because_not_actions_remove_authorization_writes() -> None:
    contributor = builtin_role("Contributor")
    assert contributor is not None
    assert grants(contributor.actions, (), "Microsoft.Authorization/roleAssignments/write")
    assert not contributor.can_write_role_assignments


def test_lookup_by_name_is_case_insensitive_and_by_id() -> None:
    by_name = builtin_role("key vault reader")
    by_id = builtin_role("21090545-7CA7-4776-B22C-E363652D74D2")
    assert by_name is not None and by_name == by_id
    assert builtin_role("Key Vault Janitor") is None
