"""PII redaction: positive and negative examples per kind, the policy from configuration, and speed."""

from __future__ import annotations

import pytest

from atp.common.v1 import chat_pb2
from atp_common.config import AtpConfig
from atp_common.privacy import PrivacyPolicy, Redactor, iban_valid, luhn_valid, redact_messages

REDACT = Redactor().redact


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mail jane.doe+tag@example.co.uk now", "mail [EMAIL] now"),
        ("a@b.io", "[EMAIL]"),
        ("call +1 415 555 2671 today", "call [PHONE] today"),
        ("call (415) 555-2671", "call [PHONE]"),
        ("tel 030-1234-5678", "tel [PHONE]"),
        ("+442071838750", "[PHONE]"),
        ("card 4111 1111 1111 1111 exp", "card [CARD] exp"),
        ("4111-1111-1111-1111", "[CARD]"),
        ("amex 378282246310005", "amex [CARD]"),
        ("IBAN DE89 3704 0044 0532 0130 00 ok", "IBAN [IBAN] ok"),
        ("GB82WEST12345698765432", "[IBAN]"),
        ("from 192.168.1.20 and 10.0.0.1", "from [IP] and [IP]"),
        ("v6 2001:db8:85a3::8a2e:370:7334 end", "v6 [IP] end"),
        ("ssn 123-45-6789", "ssn [SSN]"),
    ],
)
def test_pii_is_redacted(text: str, expected: str) -> None:
    assert REDACT(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "no pii here at all",
        "card 4111 1111 1111 1112 fails Luhn",  # a long number that is no card (and no phone: 16 digits)
        "order 1234567890123456 shipped",
        "IBAN DE89 3704 0044 0532 0130 01 wrong check digits",
        "released on 2024-01-15 at 10:30",
        "version 1.2.3 and 10.0.1",
        "999.1.1.1 is no address",
        "ssn-like 000-12-3456 and 666-12-3456",
        "std::vector<int> and a::b::c",
        "total 12345 items, 3.14159",
        "user@localhost has no domain",
    ],
)
def test_lookalikes_are_left_alone(text: str) -> None:
    assert REDACT(text) == text


def test_checksums() -> None:
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")
    assert iban_valid("DE89 3704 0044 0532 0130 00") and not iban_valid("DE89 3704 0044 0532 0130 01")


def test_only_the_chosen_kinds() -> None:
    emails_only = Redactor(frozenset({"email"})).redact
    assert emails_only("a@b.io 4111 1111 1111 1111") == "[EMAIL] 4111 1111 1111 1111"


def _config(**privacy: object) -> AtpConfig:
    return AtpConfig.model_validate(
        {
            "providers": {"local": {"type": "local"}},
            "models": {"m": {"provider": "local"}},
            "routes": {
                "auto": {"candidates": ["m"]},
                "scrubbed": {"candidates": ["m"], "redact_pii_upstream": True},
            },
            "tenants": {"on": {"redact_pii": True}, "off": {"redact_pii": False}, "default": {}},
            "privacy": privacy,
        }
    )


def test_policy_follows_tenant_then_global_setting() -> None:
    text = "reach me at jane@example.com"
    quiet = PrivacyPolicy(_config())
    assert quiet.for_storage("on")(text) == "reach me at [EMAIL]"
    assert quiet.for_storage("off")(text) == text
    assert quiet.for_storage("default")(text) == text
    assert quiet.for_storage("unknown")(text) == text

    strict = PrivacyPolicy(_config(redact_pii=True, kinds=["email"]))
    assert strict.for_storage("default")(text) == "reach me at [EMAIL]"
    assert strict.for_storage("unknown")(text) == "reach me at [EMAIL]"
    assert strict.for_storage("off")(text) == text

    assert quiet.for_upstream("auto") is None
    upstream = quiet.for_upstream("scrubbed")
    assert upstream is not None and upstream(text) == "reach me at [EMAIL]"


def test_configuration_without_privacy_settings_still_loads() -> None:
    config = AtpConfig.model_validate(
        {
            "providers": {"local": {"type": "local"}},
            "models": {"m": {"provider": "local"}},
            "routes": {"auto": {"candidates": ["m"]}},
        }
    )
    assert not config.privacy.redact_pii and config.tenants == {}
    assert not config.routes["auto"].redact_pii_upstream


def test_redact_messages_scrubs_content_text_parts_and_refusals_and_leaves_media() -> None:
    image = chat_pb2.ContentPart(image=chat_pb2.ImageContent(url="https://x.test/a@b.com.png"))
    messages = [
        chat_pb2.ChatMessage(role="user", content="mail me at a@b.com"),
        chat_pb2.ChatMessage(
            role="user",
            parts=[
                chat_pb2.ContentPart(text="a@b.com here"),
                image,
                chat_pb2.ContentPart(refusal="not a@b.com"),
            ],
        ),
        chat_pb2.ChatMessage(role="assistant", refusal="no, a@b.com"),
    ]
    redacted = redact_messages(messages, Redactor().redact)
    assert redacted[0].content == "mail me at [EMAIL]"
    assert [p.text or p.refusal or p.image.url for p in redacted[1].parts] == [
        "[EMAIL] here",
        "https://x.test/a@b.com.png",
        "not [EMAIL]",
    ]
    assert redacted[2].refusal == "no, [EMAIL]"
    assert messages[0].content == "mail me at a@b.com", "the caller's messages stay as sent"


def test_redact_messages_scrubs_search_results_and_documents_given_as_text_blocks() -> None:
    found = chat_pb2.SearchResultContent(
        source="kb://1", title="a@b.com's page", content=["write to a@b.com"]
    )
    document = chat_pb2.FileContent(title="t", content=["clause for a@b.com"])
    pdf = chat_pb2.FileContent(file_data="data:application/pdf;base64,YUBiLmNvbQ==")
    message = chat_pb2.ChatMessage(
        role="user",
        parts=[
            chat_pb2.ContentPart(search_result=found),
            chat_pb2.ContentPart(file=document),
            chat_pb2.ContentPart(file=pdf),
        ],
    )
    (redacted,) = redact_messages([message], Redactor().redact)
    assert redacted.parts[0].search_result.title == "[EMAIL]'s page"
    assert list(redacted.parts[0].search_result.content) == ["write to [EMAIL]"]
    assert redacted.parts[0].search_result.source == "kb://1"
    assert list(redacted.parts[1].file.content) == ["clause for [EMAIL]"]
    assert redacted.parts[2].file == pdf, "file data passes unchanged"
    assert list(message.parts[0].search_result.content) == ["write to a@b.com"]
