"""Data residency in the policy kernel: tenant region patterns, request narrowing and the explanation."""

from __future__ import annotations

import pytest

from atp.common.v1 import chat_pb2
from atp_common.config import AtpConfig
from atp_common.errors import PermissionDenied
from atp_common.policy import CompiledPolicy, snapshot_from_config
from atp_common.regions import RegionFilter


def _config() -> AtpConfig:
    return AtpConfig.model_validate(
        {
            "providers": {
                "azure-eu": {"type": "azure", "base_url": "http://azure-eu", "region": "westeurope"},
                "bedrock-eu": {"type": "bedrock", "region": "eu-central-1"},
                "openai": {"type": "openai", "base_url": "http://openai", "region": "us-east-1"},
            },
            "models": {
                "gpt-4o": {
                    "deployments": [
                        {"provider": "azure-eu", "provider_model": "gpt4o-eu"},
                        {"provider": "openai", "provider_model": "gpt-4o"},
                    ],
                    "strategy": "weighted",
                },
                "claude": {"provider": "bedrock-eu", "provider_model": "anthropic.claude-v1:0"},
                "gpt-mini": {"provider": "openai"},
            },
            "routes": {"auto": {"candidates": ["gpt-mini", "gpt-4o", "claude"]}},
            "tenants": {"eu-only": {"regions": ["eu-*", "westeurope"]}, "free": {}},
        }
    )


def _policy() -> CompiledPolicy:
    return CompiledPolicy.from_snapshot(snapshot_from_config(_config(), 1))


def _features(*regions: str) -> chat_pb2.RequestFeatures:
    return chat_pb2.RequestFeatures(estimated_prompt_tokens=10, regions=regions)


def test_model_specs_carry_their_deployments_regions() -> None:
    specs = {m.name: list(m.regions) for m in snapshot_from_config(_config(), 1).models}
    assert specs == {
        "gpt-4o": ["us-east-1", "westeurope"],
        "claude": ["eu-central-1"],
        "gpt-mini": ["us-east-1"],
    }


def test_a_tenant_held_to_eu_never_gets_a_us_only_model_and_the_explanation_says_why() -> None:
    decision = _policy().decide("auto", "eu-only", _features())
    assert [c.model for c in decision.candidates] == ["gpt-4o", "claude"]
    assert [(f.model, f.reason) for f in decision.filtered] == [
        ("gpt-mini", "no deployment in regions eu-*, westeurope")
    ]
    assert "region filter: eu-*, westeurope" in decision.explanation


def test_a_request_narrows_its_tenant_regions_but_cannot_widen_them() -> None:
    decision = _policy().decide("auto", "eu-only", _features("eu-*"))
    assert [c.model for c in decision.candidates] == ["claude"]
    with pytest.raises(PermissionDenied, match="outside this tenant's regions"):
        _policy().decide("auto", "eu-only", _features("us-*"))


def test_nothing_in_the_region_is_refused_not_served_elsewhere() -> None:
    with pytest.raises(PermissionDenied, match="no deployment in regions ap-"):
        _policy().decide("gpt-mini", "free", _features("ap-*"))


def test_tenants_without_regions_are_not_filtered() -> None:
    decision = _policy().decide("auto", "free", _features())
    assert len(decision.candidates) == 3 and "region" not in decision.explanation


def test_region_filter_matching() -> None:
    both = RegionFilter(["eu-*"], ["eu-west-*"])
    assert both.allows("eu-west-1") and not both.allows("eu-central-1") and not both.allows("")
    assert not RegionFilter() and RegionFilter(requested=["x"]).allows("x")
