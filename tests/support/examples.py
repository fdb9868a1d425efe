"""How many examples a property test draws: the full count in `make test`, a share of it in the inner loop."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# `make test-unit` sets this to a fraction (the inner loop); `make test` and CI leave it unset (all of them).
_SHARE = float(os.environ.get("ATP_PROPERTY_EXAMPLES_SHARE", "1"))


def property_settings(max_examples: int) -> settings:
    """Hypothesis settings with `max_examples` scaled by ATP_PROPERTY_EXAMPLES_SHARE (at least 10)."""
    return settings(
        max_examples=max(10, round(max_examples * _SHARE)),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
