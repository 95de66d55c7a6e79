"""Who may do what: roles, key scopes and the actions routes ask for (docs/api.md's matrix).

A request is allowed when the caller's role ranks at least the action's role AND the credential
carries the action's scope. Roles say what a person may do; scopes narrow what one key of theirs
may do (a CI key that only reads). A key never holds a scope its user's role could not use.
"""

import enum
from dataclasses import dataclass


class Role(enum.IntEnum):
    """Ranked: each role may do everything the ones below it may."""

    viewer = 1
    member = 2
    admin = 3
    owner = 4


ROLES = tuple(role.name for role in Role)
SCOPES = ("read", "write", "chat", "admin")

# The scopes each role can hold: a key is made with at most these.
ROLE_SCOPES: dict[Role, frozenset[str]] = {
    Role.viewer: frozenset({"read"}),
    Role.member: frozenset({"read", "write", "chat"}),
    Role.admin: frozenset(SCOPES),
    Role.owner: frozenset(SCOPES),
}


@dataclass(frozen=True, slots=True)
class Action:
    name: str
    role: Role
    scope: str


READ = Action("read", Role.viewer, "read")
WRITE = Action("write", Role.member, "write")
DELETE = Action("delete", Role.admin, "write")
CHAT = Action("chat", Role.member, "chat")
# Calls that make the tenant pay beyond a chat turn: writing artifacts on request.
SPEND = Action("spend", Role.member, "chat")
MANAGE_PEOPLE = Action("manage people and keys", Role.admin, "admin")
SET_BUDGET = Action("set budgets", Role.admin, "admin")
OPERATE = Action("operate", Role.admin, "admin")


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: resolved from an API key or an identity provider's token on every request."""

    tenant_id: str
    user_id: str
    role: str
    api_key_id: str | None = None
    scopes: frozenset[str] = frozenset(SCOPES)
    installation_owner: bool = False

    @property
    def rank(self) -> Role:
        return Role[self.role]

    def may(self, action: Action) -> bool:
        return self.rank >= action.role and action.scope in self.scopes


def role_may_grant(granter: Role, role: Role) -> bool:
    """An admin makes admins, members and viewers; only an owner makes owners."""
    return granter >= Role.admin and (role < Role.owner or granter == Role.owner)
