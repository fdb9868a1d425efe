"""PII redaction for what ATP stores: checksummed patterns in one precompiled pass, names by a NER model."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from atp.common.v1 import chat_pb2
from atp_common.config import AtpConfig
from atp_common.pii_ner import NER_KINDS, NerDetector

PII_KINDS = ("email", "phone", "card", "iban", "ip", "ssn", "identifier")

# Three cheap scans instead of one alternation tried at every position (much slower; see docs/design-notes.md,
# "Figures behind the code"): each
# pattern starts with a character class, so the regex engine skips ahead in C to where a match can begin.
# Numbers are found as runs of digits and separators, then classified in Python (IP, SSN, card, phone).
_EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}")
_IBAN = re.compile(r"[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?(?![A-Za-z0-9])")
_NUMBER_RUN = re.compile(r"[+(]?\d[\d .()\-]*\d")
_IPV6 = re.compile(r"[0-9A-Fa-f:]*:[0-9A-Fa-f:]*:[0-9A-Fa-f:]*")
_IPV4 = re.compile(r"(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)")
_SSN = re.compile(r"(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}")
_CARD = re.compile(r"\d(?:[ -]?\d){12,18}")
# International numbers (a leading +) come in groups of one to six digits ("+33 1 42 68 53 00",
# "+91 98765 43210"); national ones in groups of two to four.
_PHONE = re.compile(
    r"(?:\+\d{1,3}[ .\-]?)?(?:\(\d{1,4}\)[ .\-]?)?\d{2,4}(?:[ .\-]\d{2,4}){1,4}"
    r"|\+\d{1,3}(?:[ .\-]\d{1,6}){1,6}|\+\d{8,14}"
)
_NON_DIGITS = re.compile(r"\D")
# A free-text identifier: an upper-case code of letters and at least four digits (passport, licence,
# employee, ticket numbers: X1234567, AB-123456, D123-4567-8901); words and plain numbers are left alone.
_IDENTIFIER = re.compile(
    r"\b(?=[A-Z0-9-]{6,24}\b)(?=(?:[A-Z-]*\d){4})(?=[0-9-]*[A-Z])[A-Z0-9]+(?:-[A-Z0-9]+)*\b"
)
_LETTERS = {chr(c): str(c - 55) for c in range(ord("A"), ord("Z") + 1)}


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum of a string of digits."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if index % 2:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def iban_valid(candidate: str) -> bool:
    """ISO 13616: length 15 to 34 and the mod-97 check."""
    iban = candidate.replace(" ", "")
    if not 15 <= len(iban) <= 34:
        return False
    rearranged = iban[4:] + iban[:4]
    return int("".join(_LETTERS.get(c, c) for c in rearranged)) % 97 == 1


def _phone_like(text: str, digits: int) -> bool:
    return 9 <= digits <= 15 and (text.startswith(("+", "(")) or digits >= 10)


def _glued(text: str, start: int, end: int) -> bool:
    """Whether text[start:end] is part of a longer word (then it is no standalone number or code)."""
    return (start > 0 and (text[start - 1].isalnum() or text[start - 1] in "_.@")) or (
        end < len(text) and (text[end].isalnum() or text[end] == "_")
    )


@dataclass(frozen=True, slots=True)
class Redactor:
    """Replaces PII in text with `[EMAIL]`, `[PHONE]`, `[CARD]`, `[IBAN]`, `[IP]`, `[SSN]`.

    Built once; `redact` is a few C-speed scans with a check per candidate (Luhn for cards, mod-97 for
    IBANs, ipaddress for IPv6, digit counts for phones), so order numbers, dates and versions stay.
    """

    kinds: frozenset[str] = frozenset(PII_KINDS)

    def redact(self, text: str) -> str:
        """`text` with every enabled kind of PII replaced."""
        if not text:
            return text
        kinds = self.kinds
        if "email" in kinds and "@" in text:
            text = _EMAIL.sub("[EMAIL]", text)
        if "iban" in kinds:
            text = _IBAN.sub(self._iban, text)
        if "ip" in kinds and ("::" in text or text.count(":") >= 5):
            text = _IPV6.sub(self._ipv6, text)
        if "identifier" in kinds:
            text = _IDENTIFIER.sub("[ID]", text)
        return _NUMBER_RUN.sub(self._number, text)

    def _iban(self, match: re.Match[str]) -> str:
        found = match.group()
        if _glued(match.string, match.start(), match.end()) or not iban_valid(found):
            return found
        return "[IBAN]"

    def _ipv6(self, match: re.Match[str]) -> str:
        found = match.group()
        if len([g for g in found.split(":") if g]) < 3 or _glued(match.string, match.start(), match.end()):
            return found
        try:
            ipaddress.IPv6Address(found)
        except ValueError:
            return found
        return "[IP]"

    def _number(self, match: re.Match[str]) -> str:
        found = match.group()
        if _glued(match.string, match.start(), match.end()):
            return found
        kind = self._classify(found)
        if kind is not None:
            return kind
        if " " not in found:
            return found
        # A run can join neighbours ("10.0.0.1 10.0.0.2"): classify its space-separated pieces instead.
        return " ".join(self._classify(piece) or piece for piece in found.split(" "))

    def _classify(self, found: str) -> str | None:
        kinds = self.kinds
        if "ip" in kinds and _IPV4.fullmatch(found):
            return "[IP]"
        if "ssn" in kinds and _SSN.fullmatch(found):
            return "[SSN]"
        digits = _NON_DIGITS.sub("", found)
        if "card" in kinds and 13 <= len(digits) <= 19 and _CARD.fullmatch(found) and luhn_valid(digits):
            return "[CARD]"
        if "phone" in kinds and _phone_like(found, len(digits)) and _PHONE.fullmatch(found):
            if found.isdigit():
                return None  # a bare digit run is an id far more often than a phone number
            return "[PHONE]"
        return None


_IDENTITY: Callable[[str], str] = str


@dataclass(frozen=True, slots=True)
class TenantPrivacy:
    """What one tenant's stored text goes through: the pattern redactor, then the NER kinds (if any)."""

    redact: Callable[[str], str]
    ner_kinds: frozenset[str] = frozenset()


class PrivacyPolicy:
    """Who gets redaction, precomputed from the configuration.

    `for_storage(tenant)` is the pattern redactor to apply to text stored for that tenant (prompts in
    observations, feedback comments) when the tenant, or the global `privacy` section, asks for it, else
    the identity; `redact_for_storage` also applies the NER detector for tenants that select it (`pii:
    {detector: ner}`), off the event loop. `for_upstream(route)` is the redactor for routes that set
    `redact_pii_upstream`, else None: the forwarded request is left alone unless a route asks.
    """

    def __init__(self, config: AtpConfig) -> None:
        privacy = config.privacy
        self.redactor = Redactor(frozenset(privacy.kinds) & frozenset(PII_KINDS))
        self._default = self._tenant_privacy(privacy.redact_pii, privacy.detector, list(privacy.kinds))
        self._tenants: dict[str, TenantPrivacy] = {}
        for name, tenant in config.tenants.items():
            on = privacy.redact_pii if tenant.redact_pii is None else tenant.redact_pii
            pii = tenant.pii
            detector = pii.detector if pii is not None else privacy.detector
            kinds = pii.kinds if pii is not None and pii.kinds is not None else list(privacy.kinds)
            self._tenants[name] = self._tenant_privacy(on, detector, kinds)
        self._upstream = frozenset(name for name, route in config.routes.items() if route.redact_pii_upstream)
        uses_ner = any(t.ner_kinds for t in (*self._tenants.values(), self._default))
        self.ner: NerDetector | None = NerDetector() if uses_ner else None

    def _tenant_privacy(self, on: bool, detector: str, kinds: Sequence[str]) -> TenantPrivacy:
        if not on:
            return TenantPrivacy(_IDENTITY)
        patterns = frozenset(kinds) & frozenset(PII_KINDS)
        redact = self.redactor.redact if patterns == self.redactor.kinds else Redactor(patterns).redact
        ner_kinds = frozenset(kinds) & frozenset(NER_KINDS) if detector == "ner" else frozenset()
        return TenantPrivacy(redact, ner_kinds)

    def for_storage(self, tenant: str) -> Callable[[str], str]:
        """The pattern redaction to apply to text before it is stored for `tenant`."""
        return self._tenants.get(tenant, self._default).redact

    def uses_ner(self, tenant: str) -> bool:
        """Whether `tenant`'s stored text also goes through the NER detector (use redact_for_storage)."""
        return bool(self._tenants.get(tenant, self._default).ner_kinds)

    async def redact_for_storage(self, tenant: str, text: str) -> str:
        """Every redaction `tenant` asks for, the NER detector's on its worker thread."""
        settings = self._tenants.get(tenant, self._default)
        text = settings.redact(text)
        if settings.ner_kinds and self.ner is not None:
            text = await self.ner.redact_async(text, settings.ner_kinds)
        return text

    def for_upstream(self, route: str) -> Callable[[str], str] | None:
        """The redactor for requests forwarded on `route`, or None when the route does not ask."""
        return self.redactor.redact if route in self._upstream else None

    def close(self) -> None:
        if self.ner is not None:
            self.ner.close()


def redact_messages(
    messages: Sequence[chat_pb2.ChatMessage], scrub: Callable[[str], str]
) -> list[chat_pb2.ChatMessage]:
    """Copies of `messages` with `scrub` applied to their text: content, text parts, refusals, search
    results and documents given as text blocks.

    Images, audio and file data pass unchanged (redaction reads text); the caller's messages stay as sent.
    """
    out = []
    for message in messages:
        copy = chat_pb2.ChatMessage()
        copy.CopyFrom(message)
        if copy.content:
            copy.content = scrub(copy.content)
        if copy.refusal:
            copy.refusal = scrub(copy.refusal)
        for part in copy.parts:
            kind = part.WhichOneof("kind")
            if kind == "text":
                part.text = scrub(part.text)
            elif kind == "refusal":
                part.refusal = scrub(part.refusal)
            elif kind == "search_result":
                found = part.search_result
                found.title = scrub(found.title)
                found.content[:] = [scrub(text) for text in found.content]
            elif kind == "file" and part.file.content:
                part.file.content[:] = [scrub(text) for text in part.file.content]
        out.append(copy)
    return out
