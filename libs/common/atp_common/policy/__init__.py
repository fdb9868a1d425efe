"""The routing policy kernel: request features, snapshot compilation, and decisions (learning lives in the router)."""

from atp_common.policy.features import FEATURE_DIM, FEATURE_NAMES, compute_features
from atp_common.policy.kernel import (
    CACHE_POLICY,
    DIRECT_POLICY,
    POLICY_NAMES,
    UNLEARNED_POLICIES,
    CompiledPolicy,
)
from atp_common.policy.snapshot import POLICY_KINDS, RouteArms, model_specs, snapshot_from_config

__all__ = [
    "CACHE_POLICY",
    "DIRECT_POLICY",
    "FEATURE_DIM",
    "FEATURE_NAMES",
    "POLICY_KINDS",
    "POLICY_NAMES",
    "UNLEARNED_POLICIES",
    "CompiledPolicy",
    "RouteArms",
    "compute_features",
    "model_specs",
    "snapshot_from_config",
]
