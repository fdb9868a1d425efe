"""PII detectors on a labelled set: recall per kind, word-level precision, and cost per KB of text.

    .venv/bin/python bench/pii_eval.py            # evaluates regex and ner on bench/data/pii_eval.jsonl
    .venv/bin/python bench/pii_eval.py --build    # writes the labelled set again (deterministic)

The set is generated from templates with a fixed seed: sentences holding names, street addresses, cities,
organisations, phone numbers in several formats, e-mails, and identifiers (passport, licence, employee and
ticket numbers), plus sentences with none (dates, versions, amounts) to catch false positives. Each
sentence lists its entities as [start, end, kind].
"""

from __future__ import annotations

import argparse
import asyncio
import difflib
import random
import string
import sys
import time
from collections import Counter
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "libs" / "common"))

from atp_common.config import AtpConfig
from atp_common.privacy import PrivacyPolicy

DATA = Path(__file__).resolve().parent / "data" / "pii_eval.jsonl"
FIRST = [
    "Maria",
    "John",
    "Aisha",
    "Wei",
    "Olusegun",
    "Priya",
    "Hans",
    "Sofia",
    "Mohammed",
    "Yuki",
    "Liam",
    "Chloe",
    "Carlos",
    "Fatima",
    "Dmitri",
    "Emma",
    "Rahul",
    "Ingrid",
    "Kwame",
    "Lucia",
]
LAST = [
    "Gonzalez",
    "Smith",
    "Khan",
    "Zhang",
    "Adeyemi",
    "Sharma",
    "Müller",
    "Rossi",
    "Al-Farsi",
    "Tanaka",
    "O'Brien",
    "Dubois",
    "Fernandes",
    "Haddad",
    "Ivanov",
    "Johansson",
    "Patel",
    "Larsen",
    "Mensah",
    "Ortiz",
]
CITIES = [
    "Paris",
    "Berlin",
    "Lagos",
    "Mumbai",
    "Toronto",
    "Madrid",
    "Osaka",
    "Nairobi",
    "Chicago",
    "Dublin",
    "São Paulo",
    "Stockholm",
    "Cairo",
    "Sydney",
    "Warsaw",
]
STREETS = [
    "Baker Street",
    "Oak Avenue",
    "Elm Road",
    "Main Street",
    "Maple Drive",
    "Park Lane",
    "Queen Street",
    "Sunset Boulevard",
    "High Street",
    "Cedar Court",
]
ORGS = [
    "Acme Corp",
    "Globex Corporation",
    "Initech",
    "Umbrella Health",
    "Stark Industries",
    "Northwind Traders",
    "Contoso Bank",
    "Wayne Enterprises",
    "Fabrikam Inc",
    "Tyrell Systems",
]
PHONES = [
    "+1 415 555 0134",
    "(212) 555-0198",
    "+44 20 7946 0958",
    "+49 30 901820",
    "020 7946 0321",
    "+33 1 42 68 53 00",
    "+91 98765 43210",
    "555-867-5309",
]
IDS = ["X1234567", "AB-123456", "D123-4567-8901", "EMP-48213", "P98765432", "TCK-2024-7781", "K7654321"]

TEMPLATES = [
    ("Please send the invoice to {person} at {address}.", None),
    ("{person} from {org} will call you from {phone} tomorrow.", None),
    ("My passport number is {id} and I live in {city}.", None),
    ("Contact {person} ({email}) about the {org} contract.", None),
    ("The parcel for {person} goes to {address}, {city}.", None),
    ("Employee {id} ({person}) moved to the {city} office of {org}.", None),
    ("Call me on {phone}; I am at {address} until Friday.", None),
    ("{org} hired {person} as head of operations in {city}.", None),
    ("Ticket {id} was opened by {person} ({email}).", None),
    ("Our {city} branch at {address} is managed by {person}.", None),
]
NEGATIVES = [
    "The meeting moved to 2024-05-01 at 10:30.",
    "Version 3.11.2 fixed the bug reported last week.",
    "The total came to 1,299.50 euros including tax.",
    "Please summarise the attached quarterly report in three bullet points.",
    "Translate 'good morning' into French and German.",
    "What is the derivative of x squared plus three x?",
    "Set the timeout to 30 seconds and retry twice.",
    "Our order 48213 shipped on Tuesday.",
]


def _fill(template: str, rng: random.Random) -> tuple[str, list[list[object]]]:
    values = {
        "person": (f"{rng.choice(FIRST)} {rng.choice(LAST)}", "person"),
        "address": (f"{rng.randint(1, 999)} {rng.choice(STREETS)}", "location"),
        "city": (rng.choice(CITIES), "location"),
        "org": (rng.choice(ORGS), "organization"),
        "phone": (rng.choice(PHONES), "phone"),
        "id": (rng.choice(IDS), "identifier"),
    }
    first, last = values["person"][0].split(" ", 1)
    values["email"] = (f"{first.lower()}.{last.lower().replace(chr(39), '')}@example.com", "email")
    text, spans = "", []
    for literal, field, _spec, _conv in string.Formatter().parse(template):
        text += literal
        if field:
            value, kind = values[field]
            spans.append([len(text), len(text) + len(value), kind])
            text += value
    return text, spans


def build(count: int = 320, seed: int = 7) -> None:
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        if i % 10 == 9:
            rows.append({"text": NEGATIVES[(i // 10) % len(NEGATIVES)], "entities": []})
            continue
        text, spans = _fill(rng.choice(TEMPLATES)[0], rng)
        rows.append({"text": text, "entities": spans})
    DATA.parent.mkdir(parents=True, exist_ok=True)
    DATA.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    print(f"wrote {len(rows)} sentences to {DATA}")


def _replaced_words(original: str, redacted: str) -> set[int]:
    """Indexes of `original`'s words that the redaction changed."""
    before, after = original.split(), redacted.split()
    changed: set[int] = set()
    for tag, i1, i2, _j1, _j2 in difflib.SequenceMatcher(a=before, b=after, autojunk=False).get_opcodes():
        if tag != "equal":
            changed.update(range(i1, i2))
    return changed


def _word_kinds(text: str, entities: list[list[object]]) -> list[str | None]:
    kinds: list[str | None] = []
    position = 0
    for word in text.split():
        start = text.index(word, position)
        position = start + len(word)
        kinds.append(next((str(k) for s, e, k in entities if int(s) < position and start < int(e)), None))
    return kinds


async def evaluate(detector: str, rows: list[dict]) -> dict[str, object]:
    kinds = [
        "email",
        "phone",
        "card",
        "iban",
        "ip",
        "ssn",
        "identifier",
        "person",
        "location",
        "organization",
    ]
    config = AtpConfig.model_validate(
        {
            "providers": {"l": {"type": "local"}},
            "models": {"m": {"provider": "l"}},
            "routes": {"auto": {"candidates": ["m"]}},
            "tenants": {"t": {"redact_pii": True, "pii": {"detector": detector, "kinds": kinds}}},
        }
    )
    policy = PrivacyPolicy(config)
    await policy.redact_for_storage("t", "warm up the model with Jane Doe in Rome.")
    gold, found, false_pos, replaced_total = Counter(), Counter(), 0, 0
    started = time.perf_counter()
    outputs = [await policy.redact_for_storage("t", r["text"]) for r in rows]
    seconds = time.perf_counter() - started
    for row, redacted in zip(rows, outputs, strict=True):
        word_kinds = _word_kinds(row["text"], row["entities"])
        changed = _replaced_words(row["text"], redacted)
        replaced_total += len(changed)
        false_pos += sum(1 for i in changed if word_kinds[i] is None)
        for start, end, kind in row["entities"]:
            gold[kind] += 1
            if row["text"][start:end] not in redacted:
                found[kind] += 1
    # Per call on one sentence the fixed cost of a call dominates; a 4 KB prompt shows the cost per KB.
    block = " ".join(r["text"] for r in rows)[:4096]
    bulk_started = time.perf_counter()
    for _ in range(5):
        await policy.redact_for_storage("t", block)
    bulk_seconds = (time.perf_counter() - bulk_started) / 5
    policy.close()
    return {
        "recall": {k: found[k] / gold[k] for k in sorted(gold)},
        "word_precision": 1 - false_pos / replaced_total if replaced_total else 1.0,
        "ms_per_sentence": seconds * 1000 / len(rows),
        "ms_per_kb_4kb_prompt": bulk_seconds * 1000 / (len(block.encode()) / 1024),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--build", action="store_true", help="write the labelled set again")
    args = parser.parse_args()
    if args.build or not DATA.exists():
        build()
    rows = [orjson.loads(line) for line in DATA.read_bytes().splitlines()]
    results = {name: asyncio.run(evaluate(name, rows)) for name in ("regex", "ner")}
    kinds = sorted(results["ner"]["recall"])  # type: ignore[arg-type]
    print(f"{len(rows)} sentences; recall per kind, word-level precision, cost per KB")
    print("| detector | " + " | ".join(kinds) + " | precision | ms per sentence | ms per KB (4 KB) |")
    print("|---|" + "---:|" * (len(kinds) + 3))
    for name, result in results.items():
        recall = result["recall"]
        cells = " | ".join(f"{recall[k]:.2f}" for k in kinds)  # type: ignore[index]
        print(
            f"| {name} | {cells} | {result['word_precision']:.2f} | {result['ms_per_sentence']:.3f} "
            f"| {result['ms_per_kb_4kb_prompt']:.3f} |"
        )
    print(orjson.dumps(results).decode())


if __name__ == "__main__":
    main()
