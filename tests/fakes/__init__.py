"""Fake LLM provider servers (real aiohttp servers on loopback) with per-test fault injection."""

from .anthropic_server import FakeAnthropic, running_fake_anthropic
from .base import FakeReply, FakeServer, Faults, RecordedRequest
from .gemini_server import FakeGemini, running_fake_gemini
from .openai_server import FakeOpenAI, running_fake_openai

__all__ = [
    "FakeAnthropic",
    "FakeGemini",
    "FakeOpenAI",
    "FakeReply",
    "FakeServer",
    "Faults",
    "RecordedRequest",
    "running_fake_anthropic",
    "running_fake_gemini",
    "running_fake_openai",
]
