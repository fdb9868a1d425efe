"""Anthropic Messages API requests (POST /v1/messages) to the internal GenerateRequest any provider serves."""

from __future__ import annotations

from atp.adapters.v1 import adapters_pb2
from atp.common.v1 import chat_pb2
from atp_common.errors import InvalidArgument
from atp_gateway.dialects.json_fields import Obj, Source, dump, parse_object
from atp_gateway.dialects.messages_input import cache_hint, conversation

__all__ = ["COUNTED", "PARAMETERS", "parse_messages_request"]

# Every parameter of Anthropic's MessageCreateParams (and the sampling ones the API takes beside them) and
# what ATP does with it: the internal field it fills, or "refused" (a 400 naming it when set).
PARAMETERS: tuple[tuple[str, str], ...] = (
    ("model", "model"),
    ("messages", "messages (a final assistant turn is a prefill, which only Claude's APIs continue)"),
    ("system", "messages[0] (system, blocks with cache_control)"),
    ("max_tokens", "params.max_tokens"),
    ("stop_sequences", "params.stop"),
    ("temperature", "params.temperature"),
    ("top_p", "params.top_p"),
    ("top_k", "params.top_k"),
    ("tools", "params.tools (custom tools; server tools refused)"),
    ("tool_choice", "params.tool_choice, params.parallel_tool_calls"),
    ("thinking", "params.reasoning (budget_tokens, disabled, include_thoughts)"),
    ("output_config", "params.response_format (json_schema), params.reasoning.effort"),
    (
        "output_format",
        "translated: params.response_format (json_schema; the beta's name for output_config.format, which "
        "Anthropic is sent)",
    ),
    ("metadata", "params.user (metadata.user_id)"),
    ("service_tier", "params.service_tier (standard_only → default)"),
    ("cache_control", "params.cache_control"),
    ("stream", "stream"),
    ("container", "refused (code execution containers)"),
    ("diagnostics", "refused"),
    ("inference_geo", "params.anthropic_options.inference_geo"),
    ("speed", "params.anthropic_options.speed (standard filters nothing)"),
    ("user_profile_id", "refused"),
    ("workspace_id", "refused"),
    ("mcp_servers", "refused (server-side MCP)"),
    ("context_management", "params.anthropic_options (edits other than clear_thinking filter)"),
)

_ALLOWED = frozenset(name for name, _ in PARAMETERS)
# What POST /v1/messages/count_tokens takes (the input and what shapes it); the rest it refuses by name.
COUNTED = (
    "model",
    "messages",
    "system",
    "tools",
    "tool_choice",
    "thinking",
    "output_config",
    "output_format",
    "cache_control",
    "context_management",
)
_REFUSED = frozenset(name for name, mapping in PARAMETERS if mapping.startswith("refused"))
_MAX_INT32 = 2**31 - 1
_TIERS = {"auto": "auto", "standard_only": "default"}
# output_config.effort to the internal effort; `max` (Anthropic's highest) keeps a request to Anthropic.
_EFFORTS = ("low", "medium", "high", "xhigh", "max")


def parse_messages_request(
    body: bytes, *, counting: bool = False
) -> tuple[adapters_pb2.GenerateRequest, list[Source]]:
    """The Generate call for a Messages request (the exchange stamps who sent it), and where each of its
    messages came from in the body. `counting`: a count_tokens body (COUNTED fields, no max_tokens)."""
    obj = parse_object(body)
    if counting:
        obj.known(COUNTED, required=("model", "messages"))
    else:
        obj.known(_ALLOWED, required=("model", "messages", "max_tokens"))
    for name in sorted(_REFUSED):
        if name in obj:
            raise InvalidArgument(f"'{name}' is not supported by ATP.", param=name)
    model = obj.text("model", required=True, max_length=256) or ""
    if not model:
        raise obj.invalid("model", "must not be empty.")
    stream = bool(obj.flag("stream"))
    messages, sources = conversation(obj)
    params = _params(obj, counting)
    # A final assistant turn is the start of the reply; a count measures the input, whoever continues it.
    params.prefill = not counting and bool(messages) and messages[-1].role == "assistant"
    request = adapters_pb2.GenerateRequest(
        model=model,
        messages=messages,
        params=params,
        stream=stream,
        # message_delta always carries usage.
        include_usage=stream,
    )
    return request, sources


def _params(obj: Obj, counting: bool) -> chat_pb2.GenerationParams:
    params = chat_pb2.GenerationParams()
    if (max_tokens := obj.integer("max_tokens", low=1, high=_MAX_INT32, required=not counting)) is not None:
        params.max_tokens = max_tokens
    if (temperature := obj.number("temperature", low=0, high=1)) is not None:
        params.temperature = temperature
    if (top_p := obj.number("top_p", low=0, high=1)) is not None:
        params.top_p = top_p
    if (top_k := obj.integer("top_k", low=0, high=_MAX_INT32)) is not None:
        params.top_k = top_k
    params.stop.extend(obj.strings("stop_sequences", max_items=8191, max_length=4096))
    if (metadata := obj.object("metadata")) is not None:
        metadata.known(("user_id",))
        params.user = metadata.text("user_id", max_length=256) or ""
    if (tier := obj.text("service_tier", choices=tuple(_TIERS))) is not None:
        params.service_tier = _TIERS[tier]
    if (hint := cache_hint(obj)) is not None:
        params.cache_control.CopyFrom(hint)
    _thinking(obj, params)
    _output_config(obj, params)
    _tools(obj, params)
    _context_management(obj, params)
    if (speed := obj.text("speed", choices=("standard", "fast"))) is not None:
        params.anthropic_options["speed"] = dump(speed)
    if (geo := obj.text("inference_geo", max_length=64)) is not None:
        params.anthropic_options["inference_geo"] = dump(geo)
    return params


_MAX_EDITS = 16
_MAX_OPTION_BYTES = 16 << 10


def _context_management(obj: Obj, params: chat_pb2.GenerationParams) -> None:
    """Anthropic's context editing, kept as sent for Anthropic's models: each edit's own fields are the
    API's to check; here its shape and size, so routing can read the edit types."""
    config = obj.object("context_management")
    if config is None:
        return
    config.known(("edits",))
    for edit in config.objects("edits", max_items=_MAX_EDITS):
        edit.text("type", required=True, max_length=64)
    raw = dump(config.value)
    if len(raw) > _MAX_OPTION_BYTES:
        raise obj.invalid("context_management", f"at most {_MAX_OPTION_BYTES} bytes of JSON.")
    params.anthropic_options["context_management"] = raw


def _thinking(obj: Obj, params: chat_pb2.GenerationParams) -> None:
    thinking = obj.object("thinking")
    if thinking is None:
        return
    kind = thinking.text("type", required=True)
    if kind == "disabled":
        thinking.known(("type",))
        params.reasoning.disabled = True
    elif kind == "enabled":
        thinking.known(("type", "budget_tokens", "display"), required=("budget_tokens",))
        budget = thinking.integer("budget_tokens", low=1024, high=_MAX_INT32, required=True)
        if budget is not None and params.HasField("max_tokens") and params.max_tokens <= budget:
            raise thinking.invalid("budget_tokens", "must be less than max_tokens.")
        params.reasoning.budget_tokens = budget or 0
        # Unsent, the display is the model's default (Anthropic's, which returns thinking on most models).
        display = thinking.text("display", choices=("summarized", "omitted")) or ""
        params.reasoning.display = display
        params.reasoning.include_thoughts = display != "omitted"
    elif kind == "adaptive":
        thinking.known(("type", "display"))
        display = thinking.text("display", choices=("summarized", "omitted")) or ""
        params.reasoning.adaptive = True
        params.reasoning.display = display
        params.reasoning.include_thoughts = display != "omitted"
    else:
        path = thinking.at("type")
        raise InvalidArgument(
            f"Unsupported thinking type '{kind}' at '{path}': ATP takes 'enabled' (with budget_tokens), "
            "'adaptive' or 'disabled'.",
            param=path,
        )


def _output_config(obj: Obj, params: chat_pb2.GenerationParams) -> None:
    config = obj.object("output_config")
    form = None
    if config is not None:
        config.known(("effort", "format"))
        effort = config.text("effort", choices=_EFFORTS)
        if effort is not None:
            params.reasoning.effort = effort
        form = config.object("format")
    # The structured-outputs beta named the format at the top level; SDKs of that time still send it.
    beta_form = obj.object("output_format")
    if beta_form is not None:
        if form is not None:
            raise InvalidArgument(
                "Send the output format once: 'output_format' is the beta's name for 'output_config.format'.",
                param="output_format",
            )
        form = beta_form
    if form is not None:
        form.known(("type", "schema"), required=("type", "schema"))
        form.text("type", required=True, choices=("json_schema",))
        schema = form.object("schema", required=True)
        assert schema is not None
        params.response_format.type = "json_schema"
        params.response_format.name = "output"
        params.response_format.schema_json = dump(schema.value)


_SERVER_TOOLS = "ATP offers custom tools (name and input_schema) only; server tools run on Anthropic's side"
# A custom tool's fields. defer_loading and allowed_callers serve Anthropic's server tools (tool search, code
# execution), which ATP does not offer, so they stay unknown and are refused by name.
_TOOL_FIELDS = (
    "type",
    "name",
    "description",
    "input_schema",
    "cache_control",
    "strict",
    "eager_input_streaming",
    "input_examples",
)
_MAX_EXAMPLES = 32


def _tools(obj: Obj, params: chat_pb2.GenerationParams) -> None:
    names: set[str] = set()
    for tool in obj.objects("tools", max_items=512):
        kind = tool.text("type") or "custom"
        if kind != "custom":
            path = tool.at("type")
            raise InvalidArgument(f"Unsupported tool type '{kind}' at '{path}': {_SERVER_TOOLS}.", param=path)
        tool.known(_TOOL_FIELDS, required=("name", "input_schema"))
        schema = tool.object("input_schema", required=True)
        assert schema is not None
        entry = chat_pb2.Tool(
            type="function",
            name=tool.text("name", required=True, max_length=128) or "",
            description=tool.text("description") or "",
            parameters_json=dump(schema.value),
        )
        if (strict := tool.flag("strict")) is not None:
            entry.strict = strict
        if (eager := tool.flag("eager_input_streaming")) is not None:
            entry.eager_input_streaming = eager
        examples = tool.objects("input_examples", max_items=_MAX_EXAMPLES)
        if examples:
            entry.input_examples_json = dump([example.value for example in examples])
        if (hint := cache_hint(tool)) is not None:
            entry.cache_control.CopyFrom(hint)
        if entry.name in names:
            raise tool.invalid("name", f"duplicate tool name '{entry.name}'.")
        names.add(entry.name)
        params.tools.append(entry)
    _tool_choice(obj, params, names)


def _tool_choice(obj: Obj, params: chat_pb2.GenerationParams, names: set[str]) -> None:
    choice = obj.object("tool_choice")
    if choice is None:
        return
    kind = choice.text("type", required=True, choices=("auto", "any", "tool", "none"))
    if kind == "none":
        choice.known(("type",))
    elif kind == "tool":
        choice.known(("type", "name", "disable_parallel_tool_use"), required=("name",))
        params.tool_choice.name = choice.text("name", required=True) or ""
        if params.tool_choice.name not in names:
            raise choice.invalid("name", f"no tool named '{params.tool_choice.name}' in 'tools'.")
    else:
        choice.known(("type", "disable_parallel_tool_use"))
    params.tool_choice.mode = {"auto": "auto", "any": "required", "tool": "function", "none": "none"}[
        kind or ""
    ]
    if choice.flag("disable_parallel_tool_use"):
        params.parallel_tool_calls = False
