"""Data residency: the regions a request may be served in, from its tenant's patterns and its own."""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence

from atp_common.errors import PermissionDenied


def matches(region: str, patterns: Sequence[str]) -> bool:
    """Whether `region` matches one of `patterns` (`eu-*`, `westeurope`)."""
    return any(fnmatch.fnmatchcase(region, pattern) for pattern in patterns)


class RegionFilter:
    """The tenant's region patterns narrowed by the request's (x-atp-region). Inactive when neither
    restricts; a deployment is allowed when its region matches both sets."""

    __slots__ = ("requested", "tenant")

    def __init__(self, tenant: Sequence[str] = (), requested: Sequence[str] = ()) -> None:
        if tenant:
            outside = [r for r in requested if not matches(r, tenant)]
            if outside:
                raise PermissionDenied(
                    f"region {outside[0]!r} is outside this tenant's regions {list(tenant)}",
                    param="x-atp-region",
                )
        self.tenant = tuple(tenant)
        self.requested = tuple(requested)

    def __bool__(self) -> bool:
        return bool(self.tenant or self.requested)

    def allows(self, region: str) -> bool:
        """Whether a deployment in `region` may serve."""
        return (not self.tenant or matches(region, self.tenant)) and (
            not self.requested or matches(region, self.requested)
        )

    def describe(self) -> str:
        """The patterns in force, for explanations and errors."""
        return ", ".join(self.requested or self.tenant)
