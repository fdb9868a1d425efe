"""README's compatibility tables are the ones the code generates (atp_gateway.compat)."""

from __future__ import annotations

from pathlib import Path

from atp_common.capabilities import PROVIDER_FEATURES
from atp_gateway.compat import markdown, rows

README = Path(__file__).resolve().parents[3] / "README.md"


def _section(text: str, heading: str) -> str:
    start = text.index(heading)
    end = text.find("\n## ", start + len(heading))
    return text[start : end if end != -1 else len(text)]


def test_readme_tables_match_the_generated_ones() -> None:
    section = _section(README.read_text(), "## Compatibility")
    assert markdown() in section, "README's tables are stale: run `python -m atp_gateway.compat`"


def test_cells_follow_the_provider_features() -> None:
    table = {row[0]: row[1:] for row in rows("atp_gateway.dialects.chat_request", "chat", ("openai",))}
    providers = list(PROVIDER_FEATURES)
    anthropic = providers.index("anthropic")
    assert table["`temperature`"][providers.index("openai")] == "native"
    # Claude takes temperatures up to 1 only: the cell says which values filter it.
    assert table["`temperature`"][anthropic] == "translated, filtered for above 1"
    assert table["`temperature`"][providers.index("gemini")] == "translated"
    assert table["`stop`"][anthropic] == "translated, filtered for blank ones"
    assert table["`stream_options.include_obfuscation`"] == ["refused"] * len(providers)
    expected = "translated" if "logprobs" in PROVIDER_FEATURES["anthropic"] else "filtered (logprobs)"
    assert table["`logprobs`"][anthropic] == expected
    embeddings = {row[0]: row[1:] for row in rows("atp_gateway.embeddings", "embeddings", ("openai",))}
    assert embeddings["`model`"][anthropic] == "—"
