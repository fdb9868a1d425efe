"""NER-based PII redaction: the packaged spaCy pipeline, per-tenant detectors, and an event loop left free."""

from __future__ import annotations

import asyncio
import time

import pytest

from atp_common.config import AtpConfig
from atp_common.pii_ner import NerDetector
from atp_common.privacy import PrivacyPolicy

ALL = frozenset(("person", "location", "organization"))


@pytest.fixture(scope="module")
def detector() -> NerDetector:
    return NerDetector()


def test_names_places_and_organisations_are_replaced(detector: NerDetector) -> None:
    text = "Please forward the contract to Maria Gonzalez at 14 Baker Street, or call Acme Corp in Berlin."
    redacted = detector.redact(text, ALL)
    assert "Maria" not in redacted and "Gonzalez" not in redacted and "Berlin" not in redacted
    assert "[PERSON]" in redacted and "[LOCATION]" in redacted and "[ORGANIZATION]" in redacted
    assert "14 Baker Street" not in redacted
    assert redacted.startswith("Please forward the contract to ")


def test_only_the_chosen_kinds_go(detector: NerDetector) -> None:
    redacted = detector.redact("Angela Merkel met executives of Siemens in Munich.", frozenset({"person"}))
    assert "Angela Merkel" not in redacted and "Siemens" in redacted and "Munich" in redacted


def _config(tenants: dict[str, object], **privacy: object) -> AtpConfig:
    return AtpConfig.model_validate(
        {
            "providers": {"l": {"type": "local"}},
            "models": {"m": {"provider": "l"}},
            "routes": {"auto": {"candidates": ["m"]}},
            "tenants": tenants,
            "privacy": privacy,
        }
    )


async def test_tenants_choose_their_detector_and_regex_stays_the_default() -> None:
    policy = PrivacyPolicy(
        _config(
            {
                "ner": {
                    "redact_pii": True,
                    "pii": {"detector": "ner", "kinds": ["person", "email", "identifier"]},
                },
                "plain": {"redact_pii": True},
                "off": {},
            }
        )
    )
    text = "John Smith (john@example.com, passport X1234567) lives in Paris."
    assert not policy.uses_ner("plain") and policy.uses_ner("ner")
    assert (
        await policy.redact_for_storage("plain", text)
        == "John Smith ([EMAIL], passport X1234567) lives in Paris."
    )
    assert await policy.redact_for_storage("ner", text) == "[PERSON] ([EMAIL], passport [ID]) lives in Paris."
    assert await policy.redact_for_storage("off", text) == text
    assert PrivacyPolicy(_config({"plain": {"redact_pii": True}})).ner is None
    policy.close()


async def test_the_detector_runs_off_the_event_loop(detector: NerDetector) -> None:
    detector.redact("warm up", ALL)
    text = "Jonathan Smith from Microsoft visited 221B Baker Street in London last Tuesday. " * 200
    gaps: list[float] = []

    async def ticker() -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    tick = asyncio.create_task(ticker())
    started = time.perf_counter()
    redacted = await detector.redact_async(text, ALL)
    took = time.perf_counter() - started
    tick.cancel()
    assert "Jonathan" not in redacted
    # The loop kept turning while the model worked for much longer than any one gap.
    assert len(gaps) > 5 and max(gaps) < took / 2
