"""Who may read operator pages: a bearer token -> "admin", "viewer" or nobody.

The config's static tokens (`admin_token`, `viewer_token`) are compared in constant time; an
app with its own keys gives `access` (token -> role). Nothing configured: nobody gets in, so
/metrics and /ops are never open by accident.
"""

from __future__ import annotations

import hmac

from observability.config import AccessCheck, ObservabilityConfig, Role

__all__ = ["operator_access"]


def operator_access(config: ObservabilityConfig) -> AccessCheck:
    tokens: tuple[tuple[str, Role], ...] = (
        (config.admin_token, "admin"),
        (config.viewer_token, "viewer"),
    )
    static = [(token.encode(), role) for token, role in tokens if token]
    custom = config.access

    def role_of(token: str) -> Role | None:
        given = token.encode()
        for expected, role in static:
            if hmac.compare_digest(given, expected):
                return role
        return custom(token) if custom is not None else None

    return role_of
