"""OpenAI Responses API requests (POST /v1/responses) to the internal GenerateRequest any provider serves."""

from __future__ import annotations

from atp.adapters.v1 import adapters_pb2
from atp.common.v1 import chat_pb2
from atp_common.errors import InvalidArgument
from atp_gateway.dialects.json_fields import Obj, Source, at, dump, parse_object
from atp_gateway.dialects.responses_input import conversation

__all__ = ["COUNTED", "PARAMETERS", "RequestOptions", "parse_responses_request"]

# Every parameter of OpenAI's ResponseCreateParams and what ATP does with it: the internal field it fills,
# "refused" (a 400 naming it when set), or "recorded" (kept for the reply and the observation only).
PARAMETERS: tuple[tuple[str, str], ...] = (
    ("model", "model"),
    ("input", "messages"),
    ("instructions", "messages[0] (system)"),
    ("max_output_tokens", "params.max_tokens"),
    ("temperature", "params.temperature"),
    ("top_p", "params.top_p"),
    ("tools", "params.tools (function, custom; built-in tools refused)"),
    ("tool_choice", "params.tool_choice"),
    ("parallel_tool_calls", "params.parallel_tool_calls"),
    ("text", "params.response_format, params.verbosity"),
    ("reasoning", "params.reasoning (effort; summary → include_thoughts)"),
    ("include", "params.logprobs (message.output_text.logprobs); reasoning.encrypted_content recorded"),
    ("top_logprobs", "params.top_logprobs, params.logprobs (when above 0)"),
    ("metadata", "params.metadata, tags"),
    ("user", "params.user, end_user"),
    ("safety_identifier", "params.safety_identifier, end_user"),
    ("service_tier", "params.service_tier"),
    ("prompt_cache_key", "params.prompt_cache_key"),
    ("prompt_cache_retention", "params.prompt_cache_retention"),
    ("prompt_cache_options", "params.openai_options"),
    ("moderation", "params.openai_options"),
    ("stream", "stream"),
    ("stream_options", "recorded (include_obfuscation false only)"),
    ("store", "recorded when false; refused when true (ATP does not store responses)"),
    ("truncation", "recorded when disabled; refused when auto"),
    ("previous_response_id", "refused (stateless)"),
    ("conversation", "refused (stateless)"),
    ("background", "refused when true"),
    ("background_options", "refused"),
    ("prompt", "refused (stored prompts)"),
    ("max_tool_calls", "refused (built-in tools only)"),
    ("context_management", "refused"),
    ("access_programs", "refused"),
    ("image", "refused"),
)

_REFUSED = frozenset(p for p, mapping in PARAMETERS if mapping.startswith("refused"))
_ALLOWED = frozenset(p for p, _ in PARAMETERS)
# What OpenAI's input token count takes (InputTokenCountParams): the input and what shapes it. `personality`
# exists only there so far: a style preset of OpenAI's own models that no other provider can apply.
COUNTED = frozenset(
    {"model", "input", "instructions", "parallel_tool_calls", "reasoning", "text", "tool_choice", "tools"}
    | {"truncation", "previous_response_id", "conversation", "personality"}
)
_MAX_INT32 = 2**31 - 1
_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")
_TIERS = ("auto", "default", "flex", "scale", "priority")
_INCLUDE_LOGPROBS = "message.output_text.logprobs"
_INCLUDE_REASONING = "reasoning.encrypted_content"


class RequestOptions:
    """What the reply echoes back from the request (a Response repeats its parameters)."""

    __slots__ = ("body", "instructions", "metadata", "sources", "stream", "tool_choice", "tools")

    def __init__(self, body: Obj, stream: bool, sources: list[Source]):
        self.body = body.value
        self.stream = stream
        # Where each internal message came from, for errors that name one.
        self.sources = tuple(sources)
        self.instructions = body.value.get("instructions")
        self.metadata = body.value.get("metadata") or {}
        self.tools = body.value.get("tools") or []
        self.tool_choice = body.value.get("tool_choice") or "auto"


def parse_responses_request(
    body: bytes, *, counting: bool = False
) -> tuple[adapters_pb2.GenerateRequest, RequestOptions]:
    """The Generate call for a Responses request (the exchange stamps who sent it), and the options its
    reply repeats; `counting`, the request an input token count body describes."""
    obj = parse_object(body)
    obj.known(COUNTED if counting else _ALLOWED, required=("model", "input"))
    if obj.value.get("personality") is not None:
        raise InvalidArgument(
            "'personality' is a style preset of OpenAI's own models that ATP cannot apply.",
            param="personality",
        )
    _refuse_stateful(obj)
    stream = bool(obj.flag("stream"))
    model = obj.text("model", required=True, max_length=256) or ""
    if not model:
        raise obj.invalid("model", "must not be empty.")
    messages, sources = conversation(obj)
    request = adapters_pb2.GenerateRequest(
        model=model,
        messages=messages,
        params=_params(obj),
        stream=stream,
        # A Response always reports usage, streamed or not.
        include_usage=stream,
    )
    return request, RequestOptions(obj, stream, sources)


def _refuse_stateful(obj: Obj) -> None:
    """Refuse what needs state or services ATP does not keep, naming the field."""
    for name in sorted(_REFUSED):
        if name in obj and obj.value[name] is not False:
            raise InvalidArgument(
                _REFUSAL_MESSAGES.get(name, f"'{name}' is not supported by ATP."), param=name
            )
    # No tenant lets ATP keep responses yet (the observer stores no replies): `store` is answered honestly.
    if obj.flag("store"):
        raise InvalidArgument(
            "ATP does not store responses for this tenant: send 'store': false (or leave it out) and pass "
            "the conversation in 'input'.",
            param="store",
        )
    if obj.text("truncation", choices=("auto", "disabled")) == "auto":
        raise InvalidArgument(
            "'truncation': 'auto' is not supported: ATP sends the input as given ('disabled').",
            param="truncation",
        )
    if (options := obj.object("stream_options")) is not None:
        options.known(("include_obfuscation",))
        if options.flag("include_obfuscation"):
            raise options.invalid("include_obfuscation", "ATP's stream events carry no obfuscation.")


_STATELESS = "ATP does not store responses for this tenant: pass the whole conversation in 'input' instead."
_REFUSAL_MESSAGES = {
    "previous_response_id": _STATELESS,
    "conversation": _STATELESS,
    "background": "'background' responses are not supported by ATP.",
    "prompt": "Stored prompts ('prompt') are not supported by ATP: send the text in 'instructions'.",
    "max_tool_calls": "'max_tool_calls' limits built-in tools, which ATP does not offer.",
}


def _params(obj: Obj) -> chat_pb2.GenerationParams:
    params = chat_pb2.GenerationParams()
    if (limit := obj.integer("max_output_tokens", low=1, high=_MAX_INT32)) is not None:
        params.max_tokens = limit
    if (temperature := obj.number("temperature", low=0, high=2)) is not None:
        params.temperature = temperature
    if (top_p := obj.number("top_p", low=0, high=1)) is not None:
        params.top_p = top_p
    if (parallel := obj.flag("parallel_tool_calls")) is not None:
        params.parallel_tool_calls = parallel
    if (store := obj.flag("store")) is not None:
        params.store = store
    if (top := obj.integer("top_logprobs", low=0, high=20)) is not None:
        params.top_logprobs = top
        # Alternatives at each position are logprobs: Chat Completions refuses top_logprobs without them.
        params.logprobs = params.logprobs or top > 0
    params.metadata.update(obj.string_map("metadata", max_items=16, max_key=64, max_value=512))
    params.user = obj.text("user", max_length=256) or ""
    params.safety_identifier = obj.text("safety_identifier", max_length=256) or ""
    params.service_tier = obj.text("service_tier", choices=_TIERS) or ""
    params.prompt_cache_key = obj.text("prompt_cache_key", max_length=1024) or ""
    params.prompt_cache_retention = obj.text("prompt_cache_retention", choices=("in_memory", "24h")) or ""
    for name in ("moderation", "prompt_cache_options"):
        if (option := obj.object(name)) is not None:
            params.openai_options[name] = dump(option.value)
    _include(obj, params)
    _text(obj, params)
    _reasoning(obj, params)
    _tools(obj, params)
    return params


def _include(obj: Obj, params: chat_pb2.GenerationParams) -> None:
    for i, item in enumerate(obj.strings("include", max_items=16)):
        if item == _INCLUDE_LOGPROBS:
            params.logprobs = True
        elif item != _INCLUDE_REASONING:
            # The other includables are outputs of built-in tools ATP does not offer.
            path = at("include", i)
            raise InvalidArgument(f"Invalid value for '{path}': ATP cannot include '{item}'.", param=path)


def _text(obj: Obj, params: chat_pb2.GenerationParams) -> None:
    text = obj.object("text")
    if text is None:
        return
    text.known(("format", "verbosity"))
    params.verbosity = text.text("verbosity", choices=("low", "medium", "high")) or ""
    form = text.object("format")
    if form is None:
        return
    kind = form.text("type", required=True, choices=("text", "json_object", "json_schema"))
    if kind != "json_schema":
        form.known(("type",))
        params.response_format.type = kind or "text"
        return
    form.known(("type", "name", "schema", "description", "strict"), required=("name", "schema"))
    schema = form.object("schema", required=True)
    assert schema is not None
    params.response_format.type = "json_schema"
    params.response_format.name = form.text("name", required=True, max_length=64) or ""
    params.response_format.description = form.text("description") or ""
    params.response_format.schema_json = dump(schema.value)
    if (strict := form.flag("strict")) is not None:
        params.response_format.strict = strict


def _reasoning(obj: Obj, params: chat_pb2.GenerationParams) -> None:
    reasoning = obj.object("reasoning")
    if reasoning is None:
        return
    reasoning.known(("effort", "summary", "generate_summary"))
    if (effort := reasoning.text("effort", choices=_EFFORTS)) is not None:
        params.reasoning.effort = effort
    # A summary asks to see the model's reasoning: providers that return thinking return it as is.
    for key in ("summary", "generate_summary"):
        if reasoning.text(key, choices=("auto", "concise", "detailed")) is not None:
            params.reasoning.include_thoughts = True
            params.reasoning.display = "summarized"


_BUILT_IN = "ATP offers function and custom tools only; built-in tools need OpenAI's own Responses service"


def _tools(obj: Obj, params: chat_pb2.GenerationParams) -> None:
    names: set[str] = set()
    for tool in obj.objects("tools", max_items=128):
        kind = tool.text("type", required=True)
        if kind == "function":
            tool.known(("type", "name", "description", "parameters", "strict"), required=("name",))
            parameters = tool.object("parameters")
            entry = chat_pb2.Tool(
                type="function",
                name=tool.text("name", required=True, max_length=64) or "",
                description=tool.text("description") or "",
                parameters_json=dump(parameters.value) if parameters is not None else b"",
            )
            if (strict := tool.flag("strict")) is not None:
                entry.strict = strict
        elif kind == "custom":
            tool.known(("type", "name", "description", "format"), required=("name",))
            form = tool.object("format")
            entry = chat_pb2.Tool(
                type="custom",
                name=tool.text("name", required=True, max_length=64) or "",
                description=tool.text("description") or "",
                format_json=_custom_format(form) if form is not None else b"",
            )
        else:
            path = tool.at("type")
            raise InvalidArgument(f"Unsupported tool type '{kind}' at '{path}': {_BUILT_IN}.", param=path)
        if entry.name in names:
            raise tool.invalid("name", f"duplicate tool name '{entry.name}'.")
        names.add(entry.name)
        params.tools.append(entry)
    _tool_choice(obj, params, names)


def _custom_format(form: Obj) -> bytes:
    """A custom tool's format in Chat Completions' terms, the internal ones: a grammar's syntax and
    definition sit under `grammar` there, beside `type` here."""
    kind = form.text("type", required=True, choices=("text", "grammar"))
    if kind == "text":
        form.known(("type",))
        return dump({"type": "text"})
    form.known(("type", "syntax", "definition"), required=("syntax", "definition"))
    syntax = form.text("syntax", required=True, choices=("lark", "regex"))
    grammar = {"definition": form.text("definition", required=True), "syntax": syntax}
    return dump({"type": "grammar", "grammar": grammar})


def _tool_choice(obj: Obj, params: chat_pb2.GenerationParams, names: set[str]) -> None:
    value = obj.value.get("tool_choice")
    if value is None:
        return
    choice = params.tool_choice
    if isinstance(value, str):
        choice.mode = obj.text("tool_choice", choices=("none", "auto", "required")) or ""
        return
    picked = obj.object("tool_choice")
    assert picked is not None
    kind = picked.text("type", required=True)
    if kind in ("function", "custom"):
        picked.known(("type", "name"), required=("name",))
        # A custom tool is forced as one: Chat Completions names the two kinds apart.
        choice.mode = kind
        choice.name = picked.text("name", required=True) or ""
        if choice.name not in names:
            raise picked.invalid("name", f"no tool named '{choice.name}' in 'tools'.")
    elif kind == "allowed_tools":
        picked.known(("type", "mode", "tools"), required=("mode", "tools"))
        choice.mode = "allowed_tools"
        choice.allowed_mode = picked.text("mode", required=True, choices=("auto", "required")) or ""
        for tool in picked.objects("tools", min_items=1, max_items=128):
            tool.known(("type", "name"), required=("type", "name"))
            tool.text("type", choices=("function", "custom"))
            choice.allowed.append(tool.text("name", required=True) or "")
    else:
        path = picked.at("type")
        raise InvalidArgument(f"Unsupported tool_choice type '{kind}' at '{path}': {_BUILT_IN}.", param=path)
