"""What the translation property tests share: one offline provider of each type, settings, marker words."""

from __future__ import annotations

from hypothesis import strategies as st

from atp_adapters.providers import build_provider
from atp_common.config import HttpProvider
from tests.support.examples import property_settings

PROVIDER_TYPES = ("openai", "azure", "anthropic", "gemini")
# Never called over the network: the tests use their encoders and decoders.
PROVIDERS = {
    kind: build_provider(kind, HttpProvider(type=kind, base_url="http://127.0.0.1:9"), lambda _ref: "k")
    for kind in PROVIDER_TYPES
}
SETTINGS = property_settings(60)

# Marker words: never valid JSON (a provider may parse a tool result), never empty, easy to find.
words = st.from_regex(r"w[a-z0-9]{1,10}", fullmatch=True)
