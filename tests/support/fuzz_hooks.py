"""schemathesis hooks of the gateway's fuzz runs: no error body may carry an internal detail."""

from __future__ import annotations

import re

import schemathesis

# What a body must never show: peers' addresses, gRPC's and Python's own words. Generated inputs echoed
# back (an unknown model's name) do not look like these.
INTERNAL_DETAIL = re.compile(
    rb"127\.0\.0\.1|\[::1\]|ipv[46]:|StatusCode\.|AioRpcError|Traceback|File \"|failed to connect|"
    rb"Socket closed|Deadline Exceeded|grpc_status|_InactiveRpcError",
    re.IGNORECASE,
)


@schemathesis.check
def no_internal_detail(ctx, response, case):  # type: ignore[no-untyped-def]
    """An error body names no address, library or stack frame."""
    if response.status_code >= 400:
        found = INTERNAL_DETAIL.search(response.content)
        if found is not None:
            raise AssertionError(f"internal detail {found.group(0)!r} in a {response.status_code} body")
