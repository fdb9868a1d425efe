"""The README's compatibility table (endpoint, parameter, provider type), generated from the code's tables."""

from __future__ import annotations

import importlib
import re
from collections.abc import Sequence

from atp_common.capabilities import PROVIDER_FEATURES

__all__ = ["FIELD_FEATURES", "markdown", "rows"]

# `python -m atp_gateway.compat` prints it. Sources: each dialect's PARAMETERS (parameter -> the internal
# field that carries it, or `refused`/`recorded`), and capabilities.PROVIDER_FEATURES (what each provider
# type's API can express). A parameter whose field needs a feature a provider type lacks makes that
# provider's candidates be filtered out before routing; the request is refused (400 naming the parameter)
# when no candidate is left.

# The internal request's fields that need a feature of the serving candidate (longest prefix wins).
FIELD_FEATURES: dict[str, str] = {
    "messages.parts.image": "vision",
    "messages.parts.audio": "audio_input",
    "messages.parts.file": "files",
    "stream": "streaming",
    "params.n": "multiple_choices",
    "params.logprobs": "logprobs",
    "params.top_logprobs": "logprobs",
    "params.logit_bias": "logit_bias",
    "params.prediction": "prediction",
    "params.seed": "seed",
    "params.presence_penalty": "penalties",
    "params.frequency_penalty": "penalties",
    "params.top_k": "top_k",
    "params.tools": "tools",
    "params.tools.custom": "custom_tools",
    "params.tools.cache_control": "tools",
    "params.tool_choice": "tools",
    "params.tool_choice.allowed": "custom_tools",
    "params.parallel_tool_calls": "no_parallel_tool_calls",
    "params.store": "store",
    "params.service_tier": "service_tier",
    "params.verbosity": "verbosity",
    "params.openai_options": "openai_options",
    "params.anthropic_options": "context_management",
    "params.anthropic_options.speed": "speed",
    "params.anthropic_options.inference_geo": "inference_geo",
    "params.reasoning": "reasoning",
    "params.modalities": "audio_output",
    "params.audio": "audio_output",
    "params.response_format": "json",
    "params.response_format.json_object": "json_object",
    "inputs": "embeddings",
    "dimensions": "embeddings",
}

# Fields that need a feature only for some values: (feature, the values), shown beside the cell.
VALUE_FEATURES: dict[str, tuple[str, str]] = {
    "params.temperature": ("temperature_above_1", "above 1"),
    "params.stop": ("blank_stop", "blank ones"),
}

# Each endpoint: its dialect's parameter table, the feature every request of it needs, and the provider
# types that speak its API natively.
_OPENAI_NATIVE = ("openai", "azure", "local")
ENDPOINTS: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    ("POST /v1/chat/completions", "atp_gateway.dialects.chat_request", "chat", _OPENAI_NATIVE),
    ("POST /v1/responses", "atp_gateway.dialects.responses_request", "chat", ()),
    ("POST /v1/messages", "atp_gateway.dialects.messages_request", "chat", ("anthropic",)),
    ("POST /v1/embeddings", "atp_gateway.embeddings", "embeddings", _OPENAI_NATIVE),
)
_FIELD = re.compile(r"\b(?:params|messages|inputs|dimensions|stream)(?:\.[a-z_]+)*\b")
LEGEND = (
    "**native**: sent as the provider's API names it; **translated**: sent in the provider's own terms; "
    "**filtered (feature)**: when the parameter is set, candidates of that provider type are filtered out "
    "before routing (a 400 naming the parameter when none is left); **..., filtered for (values)**: only "
    "those values filter that provider type's candidates; **gateway**: handled or recorded by "
    "the gateway itself; **refused**: a 400 naming the parameter; **—**: the provider type does not serve "
    "the endpoint."
)


def _features(internal: str) -> list[str]:
    """The features the internal fields named in `internal` need (several for a parameter that fills
    several fields)."""
    needed: list[str] = []
    for field in _FIELD.findall(internal):
        best = max(
            (prefix for prefix in FIELD_FEATURES if field == prefix or field.startswith(prefix + ".")),
            key=len,
            default="",
        )
        if best and FIELD_FEATURES[best] not in needed:
            needed.append(FIELD_FEATURES[best])
    return needed


def _cell(internal: str, provider: str, base: str, native: Sequence[str]) -> str:
    if base not in PROVIDER_FEATURES[provider]:
        return "—"
    if internal.startswith("refused"):
        return "refused"
    if internal.startswith(("recorded", "gateway")):
        return "gateway"
    missing = [f for f in _features(internal) if f not in PROVIDER_FEATURES[provider]]
    if missing:
        return f"filtered ({', '.join(missing)})"
    # A mapping that says "translated" is one even for the dialect's own provider (a beta's old name).
    kind = "native" if provider in native and not internal.startswith("translated") else "translated"
    conditional = [
        values
        for field, (feature, values) in VALUE_FEATURES.items()
        if field in _FIELD.findall(internal) and feature not in PROVIDER_FEATURES[provider]
    ]
    return f"{kind}, filtered for {', '.join(conditional)}" if conditional else kind


def rows(module: str, base: str, native: Sequence[str]) -> list[list[str]]:
    """One row per parameter of the dialect in `module`: the parameter, then a cell per provider type."""
    parameters: Sequence[tuple[str, str]] = importlib.import_module(module).PARAMETERS
    providers = list(PROVIDER_FEATURES)
    return [
        [f"`{name}`", *(_cell(internal, p, base, native) for p in providers)] for name, internal in parameters
    ]


def markdown() -> str:
    """The tables, one per endpoint, as they appear in README's Compatibility section."""
    providers = list(PROVIDER_FEATURES)
    out = [LEGEND, ""]
    for endpoint, module, base, native in ENDPOINTS:
        table = rows(module, base, native)
        out += [f"### {endpoint}", "", "| parameter | " + " | ".join(providers) + " |"]
        out.append("|---" * (len(providers) + 1) + "|")
        out += ["| " + " | ".join(row) + " |" for row in table]
        out.append("")
    return "\n".join(out).rstrip() + "\n"


if __name__ == "__main__":
    print(markdown(), end="")
