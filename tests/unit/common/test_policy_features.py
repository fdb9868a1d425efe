"""Request features: token estimate, hard needs and the context vector's cues."""

from __future__ import annotations

import math

import pytest

from atp.common.v1 import chat_pb2
from atp_common.capabilities import BY_NAME, feature_names, supported_features
from atp_common.policy import FEATURE_DIM, FEATURE_NAMES, compute_features
from atp_common.policy.features import IMAGE_TOKENS, MESSAGE_OVERHEAD_TOKENS, REPLY_OVERHEAD_TOKENS

IDX = {name: i for i, name in enumerate(FEATURE_NAMES)}


def _user(text: str) -> chat_pb2.ChatMessage:
    return chat_pb2.ChatMessage(role="user", content=text)


def _features(*messages: chat_pb2.ChatMessage, stream: bool = False, **params) -> chat_pb2.RequestFeatures:
    return compute_features(list(messages), chat_pb2.GenerationParams(**params), stream)


def _cue(text: str, name: str) -> float:
    return _features(_user(text)).vector[IDX[name]]


def test_vector_has_the_documented_order_and_length() -> None:
    features = _features(_user("hello"))
    assert FEATURE_DIM == len(FEATURE_NAMES) == len(features.vector) == 13
    assert FEATURE_NAMES[0] == "bias" and features.vector[0] == 1.0


def test_prompt_tokens_are_chars_over_four_plus_overheads() -> None:
    features = _features(chat_pb2.ChatMessage(role="system", content="x" * 40), _user("y" * 400))
    assert features.estimated_prompt_tokens == 440 // 4 + 2 * MESSAGE_OVERHEAD_TOKENS + REPLY_OVERHEAD_TOKENS
    assert math.isclose(features.vector[IDX["log_prompt_tokens"]], math.log1p(121) / 10, rel_tol=1e-6)
    assert math.isclose(features.vector[IDX["prompt_kilotokens"]], 0.121, rel_tol=1e-6)


def test_linear_size_feature_saturates() -> None:
    assert _features(_user("z" * 100_000)).vector[IDX["prompt_kilotokens"]] == 4.0


def test_max_tokens_and_stream_are_carried() -> None:
    features = _features(_user("hi"), stream=True, max_tokens=300)
    assert features.max_output_tokens == 300 and features.stream
    assert math.isclose(features.vector[IDX["log_max_output_tokens"]], math.log1p(300) / 10, rel_tol=1e-6)
    unset = _features(_user("hi"))
    assert unset.max_output_tokens == 0 and unset.vector[IDX["log_max_output_tokens"]] == 0.0


def test_tools_offered_or_in_history_need_tools() -> None:
    tools = [chat_pb2.Tool(type="function", name="f", parameters_json=b'{"type":"object"}')]
    assert _features(_user("hi"), tools=tools).needs_tools
    assert not _features(_user("hi"), tools=[]).needs_tools
    history = chat_pb2.ChatMessage(role="tool", content="42", tool_call_id="c1")
    features = _features(_user("hi"), history)
    assert features.needs_tools and features.vector[IDX["tools"]] == 1.0
    with_tools = _features(_user("hi"), tools=tools)
    assert with_tools.estimated_prompt_tokens > _features(_user("hi")).estimated_prompt_tokens


def test_image_parts_need_vision_and_count_as_image_tokens() -> None:
    parts = [
        chat_pb2.ContentPart(text="what is in this picture?"),
        chat_pb2.ContentPart(image=chat_pb2.ImageContent(url="data:image/png;base64," + "A" * 40_000)),
    ]
    features = _features(chat_pb2.ChatMessage(role="user", parts=parts))
    assert features.needs_vision and features.vector[IDX["vision"]] == 1.0
    # The base64 payload must not count as text: one image is IMAGE_TOKENS, not 10,000.
    assert IMAGE_TOKENS < features.estimated_prompt_tokens < IMAGE_TOKENS + 30
    assert features.vector[IDX["question"]] == 1.0


def test_json_response_formats() -> None:
    def fmt(kind: str) -> chat_pb2.ResponseFormat:
        return chat_pb2.ResponseFormat(type=kind)

    assert _features(_user("x"), response_format=fmt("json_object")).needs_json
    assert _features(_user("x"), response_format=fmt("json_schema")).needs_json
    assert not _features(_user("x"), response_format=fmt("text")).needs_json


def _required(*messages: chat_pb2.ChatMessage, stream: bool = False, **params) -> list[str]:
    return feature_names(_features(*messages, stream=stream, **params).required_features)


def test_a_plain_request_requires_chat_only_and_a_stream_streaming() -> None:
    assert _required(_user("hi"), max_tokens=5, temperature=1, top_p=1, user="u") == ["chat"]
    assert _required(_user("hi"), stream=True) == ["streaming", "chat"]


@pytest.mark.parametrize(
    ("params", "names"),
    [
        ({"tools": [chat_pb2.Tool(type="custom", name="c")]}, ["tools", "custom_tools"]),
        ({"temperature": 1.5}, ["temperature_above_1", "custom_temperature"]),
        ({"temperature": 0.3}, ["custom_temperature"]),
        ({"temperature": 1.0}, []),
        ({"top_p": 0.9}, ["custom_top_p"]),
        ({"top_p": 0.9, "temperature": 0.3}, ["custom_temperature", "custom_top_p", "temperature_and_top_p"]),
        ({"top_p": 0.9, "temperature": 1.0}, ["custom_top_p"]),
        ({"top_p": 1.0}, []),
        ({"stop": ["END", "\n"]}, ["blank_stop", "stop_sequences"]),
        ({"stop": [""]}, ["blank_stop", "stop_sequences"]),
        ({"stop": [" END "]}, ["stop_sequences"]),
        ({"tool_choice": chat_pb2.ToolChoice(mode="allowed_tools", allowed=["f"])}, ["custom_tools"]),
        ({"response_format": chat_pb2.ResponseFormat(type="json_schema")}, ["json"]),
        ({"modalities": ["text", "audio"]}, ["audio_output"]),
        ({"audio": chat_pb2.AudioOutput(voice="alloy", format="wav")}, ["audio_output"]),
        ({"reasoning": chat_pb2.Reasoning(effort="high")}, ["reasoning"]),
        ({"reasoning": chat_pb2.Reasoning(budget_tokens=2048)}, ["reasoning"]),
        ({"reasoning": chat_pb2.Reasoning(effort="none")}, []),
        ({"n": 3}, ["multiple_choices"]),
        ({"n": 1}, []),
        ({"logprobs": True}, ["logprobs"]),
        ({"top_logprobs": 2}, ["logprobs"]),
        ({"logit_bias": {"50256": -100}}, ["logit_bias"]),
        ({"prediction": chat_pb2.Prediction(content="x")}, ["prediction"]),
        ({"seed": 7}, ["seed"]),
        ({"presence_penalty": 0.5}, ["penalties"]),
        ({"frequency_penalty": 0.0}, []),
        ({"top_k": 40}, ["top_k"]),
        ({"parallel_tool_calls": False}, ["no_parallel_tool_calls"]),
        ({"parallel_tool_calls": True}, []),
        ({"store": True}, ["store"]),
        ({"store": False}, []),
        ({"service_tier": "flex"}, ["service_tier"]),
        ({"service_tier": "auto"}, []),
        ({"verbosity": "low"}, ["verbosity"]),
        ({"openai_options": {"web_search_options": b"{}"}}, ["openai_options"]),
        # Cache hints every provider type honours (translated or by omission) need nothing.
        ({"prompt_cache_key": "k"}, []),
        ({"prompt_cache_retention": "24h"}, []),
        # OpenAI's default verbosity is every provider's by omission; another needs OpenAI.
        ({"verbosity": "medium"}, []),
        ({"metadata": {"a": "b"}, "safety_identifier": "s"}, []),
    ],
)
def test_each_parameter_requires_its_feature(params: dict, names: list[str]) -> None:
    assert sorted(_required(_user("hi"), **params)) == sorted([*names, "chat"])


def test_content_parts_require_their_features() -> None:
    audio = chat_pb2.ContentPart(audio=chat_pb2.AudioContent(data="AAAA", format="wav"))
    file = chat_pb2.ContentPart(file=chat_pb2.FileContent(file_id="file-1"))
    image = chat_pb2.ContentPart(image=chat_pb2.ImageContent(url="https://x/y.png"))
    message = chat_pb2.ChatMessage(role="user", parts=[audio, file, image])
    assert sorted(_required(message)) == ["audio_input", "chat", "files", "vision"]
    audio_reply = chat_pb2.ChatMessage(role="assistant", audio_id="audio_1")
    assert sorted(_required(_user("hi"), audio_reply)) == ["audio_output", "chat"]
    tool_result = chat_pb2.ChatMessage(role="tool", content="42", tool_call_id="c1")
    # Tool history with no tools offered is a feature of its own (Claude's APIs want the tools named).
    assert sorted(_required(_user("hi"), tool_result)) == ["chat", "tool_history_only", "tools"]
    offered = [chat_pb2.Tool(type="function", name="f")]
    assert sorted(_required(_user("hi"), tool_result, tools=offered)) == ["chat", "tools"]


def test_text_cues() -> None:
    assert _cue("```python\nprint(1)\n```", "has_code") == 1.0
    assert _cue("Fix this:\ndef f(x):\n    return x", "has_code") == 1.0
    assert _cue("int main() {\n  return 0;\n}", "has_code") == 1.0
    assert _cue("Tell me a story about a cat.", "has_code") == 0.0
    assert _cue("Why is the sky blue", "question") == 1.0
    assert _cue("The sky is blue?", "question") == 1.0
    assert _cue("Tell me a story.", "question") == 0.0
    assert _cue("Pick one:\nA) red\nB) blue\nC) green", "multiple_choice") == 1.0
    assert _cue("(a) red\n(b) blue", "multiple_choice") == 1.0
    assert _cue("A list of colours: red, blue", "multiple_choice") == 0.0
    assert _cue("What is 12 * 7?", "math") == 1.0
    assert _cue("Compute \\frac{1}{2} of it", "math") == 1.0
    assert _cue("Solve for x", "math") == 1.0
    assert _cue("Write a haiku about autumn.", "math") == 0.0
    assert _cue("hello", "non_ascii_share") == 0.0
    assert _cue("日本語で答えて", "non_ascii_share") == 1.0
    assert 0.0 < _cue("café au lait", "non_ascii_share") < 0.2


def test_cues_read_the_last_user_message() -> None:
    features = _features(
        _user("What is 2 + 2?"), chat_pb2.ChatMessage(role="assistant", content="4"), _user("thanks")
    )
    assert features.vector[IDX["math"]] == 0.0 and features.vector[IDX["question"]] == 0.0
    assert math.isclose(features.vector[IDX["log_turns"]], math.log1p(2) / 3, rel_tol=1e-6)


def test_huge_prompt_is_measured_but_cues_read_a_bounded_sample() -> None:
    text = "Tell me about cats. " * 50_000 + "What is 3 + 4?"
    features = _features(_user(text))
    assert features.estimated_prompt_tokens > 250_000
    # The trailing arithmetic lies beyond the sample the cues read.
    assert features.vector[IDX["math"]] == 0.0


def test_an_opening_assistant_turn_after_the_instructions_is_a_feature() -> None:
    greeting = chat_pb2.ChatMessage(role="assistant", content="Hello! How can I help?")
    for system in ("system", "developer"):
        opened = _features(chat_pb2.ChatMessage(role=system, content="be kind"), greeting, _user("hi"))
        assert "assistant_first" in feature_names(opened.required_features)
    later = _features(_user("hi"), greeting, _user("and?"))
    assert "assistant_first" not in feature_names(later.required_features)
    assert "assistant_first" not in feature_names(_features().required_features)
    alone = _features(chat_pb2.ChatMessage(role="system", content="Write a haiku."))
    assert "instructions_only" in feature_names(alone.required_features)
    assert "instructions_only" not in feature_names(later.required_features)
    # Claude's APIs (Anthropic's, Bedrock's Converse) refuse such a conversation; the others take it.
    for provider, honours in (("anthropic", False), ("bedrock", False), ("openai", True), ("gemini", True)):
        bits = supported_features(provider, ["tools"])
        assert bool(bits & BY_NAME["assistant_first"].bit) is honours, provider
    for provider, honours in (("anthropic", False), ("bedrock", False), ("openai", True), ("gemini", False)):
        bits = supported_features(provider, ["tools"])
        assert bool(bits & BY_NAME["instructions_only"].bit) is honours, provider
    # Bedrock's Converse refuses tool history without tools and has no tool_choice none to name them with.
    for provider, honours in (("anthropic", True), ("bedrock", False), ("openai", True), ("gemini", True)):
        bits = supported_features(provider, ["tools"])
        assert bool(bits & BY_NAME["tool_history_only"].bit) is honours, provider


def test_a_model_taking_only_the_default_sampling_honours_none_of_the_rest() -> None:
    sampling = ("custom_temperature", "custom_top_p", "penalties", "logprobs", "logit_bias")
    for provider in ("openai", "azure", "anthropic", "gemini", "bedrock", "local"):
        for name in ("custom_temperature", "custom_top_p", "temperature_and_top_p", "stop_sequences"):
            assert BY_NAME[name].bit & supported_features(provider, ["tools"]), (provider, name)
    anything = feature_names(supported_features("openai", ["tools"]))
    default_only = feature_names(supported_features("openai", ["tools"], "default"))
    assert set(anything) - set(default_only) == set(sampling)
    one_of = feature_names(supported_features("anthropic", ["tools"], "temperature_or_top_p"))
    assert set(feature_names(supported_features("anthropic", ["tools"]))) - set(one_of) == {
        "temperature_and_top_p"
    }
    stopless = feature_names(supported_features("openai", ["tools"], stop_sequences=False))
    assert set(anything) - set(stopless) == {"stop_sequences"}
