"""Who is calling: a staff user, a channel (API key) or a storefront customer."""

from __future__ import annotations

from dataclasses import dataclass, field

from mercato.auth.permissions import LOCATION_SCOPED_ROLES, ROLE_PERMISSIONS, Permission, Role
from mercato.errors import Forbidden


@dataclass(frozen=True)
class Principal:
    kind: str  # "staff" | "channel" | "customer" | "system"
    id: int | None = None
    label: str | None = None
    role: Role | None = None
    permissions: frozenset[Permission] = field(default_factory=frozenset)
    # None means every location; a set limits location-scoped roles to their stores.
    location_ids: frozenset[int] | None = None
    channel_id: int | None = None
    customer_id: int | None = None
    # The staff token this request came with (a password change keeps that session).
    token_id: int | None = None

    @classmethod
    def staff(
        cls,
        user_id: int,
        email: str,
        role: Role,
        location_ids: frozenset[int],
        token_id: int | None = None,
    ) -> Principal:
        return cls(
            kind="staff",
            id=user_id,
            label=email,
            role=role,
            permissions=ROLE_PERMISSIONS[role],
            location_ids=location_ids if role in LOCATION_SCOPED_ROLES else None,
            token_id=token_id,
        )

    @classmethod
    def system(cls, label: str = "system") -> Principal:
        return cls(kind="system", label=label, permissions=frozenset(Permission))

    def has(self, permission: Permission) -> bool:
        return permission in self.permissions

    def require(self, permission: Permission) -> None:
        if permission not in self.permissions:
            raise Forbidden(
                f"role {self.role or self.kind} lacks permission {permission.value}",
                extra={"permission": permission.value},
            )

    def can_access_location(self, location_id: int) -> bool:
        return self.location_ids is None or location_id in self.location_ids

    def require_location(self, location_id: int) -> None:
        if not self.can_access_location(location_id):
            raise Forbidden(
                f"not allowed to act on location {location_id}",
                code="location-forbidden",
                extra={"location_id": location_id},
            )
