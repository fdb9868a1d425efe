"""Semantic request features: a static word embedding of the prompt, projected to a few dimensions."""

from __future__ import annotations

import hashlib
import importlib.util
import threading
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

from atp.common.v1 import chat_pb2

# The embedding ships inside the `wordllama` wheel (weights and tokenizer). Its own loader looks for the
# tokenizer under the wrong folder name and then tries a download, so the files are read directly from
# the installed package: nothing is ever fetched.
EMBEDDING_MODEL = "wordllama/l2_supercat_256"
EMBEDDING_DIM = 256
_WEIGHTS = ("weights", "l2_supercat_256.safetensors")
_TOKENIZER = ("tokenizers", "l2_supercat_tokenizer_config.json")
_TENSOR_KEY = "embedding.weight"

# Bounded prefixes keep the cost flat in prompt size: the start of a prompt says what it is about.
SYSTEM_PREFIX_CHARS = 256
USER_PREFIX_CHARS = 1024
# Word -> token ids; cleared when full, so memory stays bounded whatever the traffic.
_WORD_CACHE_SIZE = 1 << 16
# Compiled encoders per projection digest (snapshots recompile often; the table product is not free).
_ENCODER_CACHE_SIZE = 8


class EmbeddingUnavailable(RuntimeError):
    """The embedding package is not installed (install `wordllama`)."""


def _package_dir() -> Path:
    spec = importlib.util.find_spec("wordllama")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddingUnavailable("semantic features need the `wordllama` package installed")
    return Path(next(iter(spec.submodule_search_locations)))


_load_lock = threading.Lock()


@lru_cache(maxsize=1)
def _load() -> tuple[object, np.ndarray]:
    """(tokenizer, embedding table float32 [vocab, 256]), read once per process from the installed wheel."""
    from safetensors.numpy import load_file
    from tokenizers import Tokenizer

    with _load_lock:
        root = _package_dir()
        table = load_file(str(root.joinpath(*_WEIGHTS)))[_TENSOR_KEY].astype(np.float32)
        tokenizer = Tokenizer.from_file(str(root.joinpath(*_TOKENIZER)))
        tokenizer.no_truncation()
        tokenizer.no_padding()
    return tokenizer, table


def embedding_table() -> np.ndarray:
    """The token embedding table [vocab, EMBEDDING_DIM] (loads the model on first use)."""
    return _load()[1]


class _WordIds:
    """Token ids per whitespace-separated word, cached: tokenizing word by word costs a dict lookup once
    the vocabulary of the traffic has been seen, where the tokenizer pays for every token of the whole text."""

    def __init__(self) -> None:
        self._cache: dict[str, tuple[int, ...]] = {}

    def ids(self, text: str) -> list[int]:
        cache = self._cache
        tokenizer = None
        out: list[int] = []
        for word in text.split():
            ids = cache.get(word)
            if ids is None:
                if tokenizer is None:
                    tokenizer = _load()[0]
                ids = tuple(tokenizer.encode(word, add_special_tokens=False).ids)  # type: ignore[attr-defined]
                if len(cache) >= _WORD_CACHE_SIZE:
                    cache.clear()
                cache[word] = ids
            out.extend(ids)
        return out


_words = _WordIds()


def _content(message: chat_pb2.ChatMessage) -> str:
    """A message's text: its content, or its text parts joined."""
    if message.content or not message.parts:
        return message.content
    return "\n".join(part.text for part in message.parts if part.WhichOneof("kind") == "text")


def semantic_text(messages: Sequence[chat_pb2.ChatMessage]) -> str:
    """What the embedding reads: the system prompt's start and the last user turn's start."""
    system = ""
    user = ""
    for message in messages:
        if message.role in ("system", "developer") and not system:
            system = _content(message)[:SYSTEM_PREFIX_CHARS]
        elif message.role == "user":
            user = _content(message)
    user = user[:USER_PREFIX_CHARS]
    return f"{system}\n{user}" if system else user


def embed_texts(texts: Sequence[str]) -> np.ndarray:
    """Mean token embeddings [len(texts), EMBEDDING_DIM] of texts, tokenized as requests are (training)."""
    table = embedding_table()
    out = np.zeros((len(texts), table.shape[1]), dtype=np.float32)
    for row, text in enumerate(texts):
        ids = _words.ids(text)
        if ids:
            out[row] = table[ids].mean(axis=0)
    return out


class SemanticEncoder:
    """Projected embedding of a request: P (mean_t E[t] - mu), with P and mu from a policy artifact.

    The projection is folded into the table once (E P^T, vocab x k), so a request costs a gather of k
    floats per token instead of 256 plus a matrix product.
    """

    def __init__(self, matrix: np.ndarray, offset: np.ndarray):
        matrix = np.asarray(matrix, dtype=np.float32)
        if matrix.ndim != 2 or matrix.shape[1] != EMBEDDING_DIM:
            raise ValueError(f"projection must be k x {EMBEDDING_DIM}, got {matrix.shape}")
        self.dim = matrix.shape[0]
        self._table = np.ascontiguousarray(embedding_table() @ matrix.T)
        self._offset = np.asarray(offset, dtype=np.float32).reshape(self.dim)
        self._zeros = [0.0] * self.dim

    def encode_text(self, text: str) -> list[float]:
        """The k projected features of `text` (zeros for text without words)."""
        ids = _words.ids(text)
        if not ids:
            return self._zeros
        vector: list[float] = (self._table[ids].mean(axis=0) - self._offset).tolist()
        return vector

    def encode(self, messages: Sequence[chat_pb2.ChatMessage]) -> list[float]:
        """The k projected features of a request's messages."""
        return self.encode_text(semantic_text(messages))


def projection_digest(matrix: Sequence[float], offset: Sequence[float]) -> str:
    """A digest naming one projection (cache key and artifact check)."""
    data = np.asarray(matrix, dtype=np.float32).tobytes() + np.asarray(offset, dtype=np.float32).tobytes()
    return hashlib.sha256(data).hexdigest()[:16]


_encoders: dict[str, SemanticEncoder] = {}


def encoder_for(projection: object) -> SemanticEncoder:
    """The encoder of a snapshot's SemanticProjection, compiled once per projection and process."""
    key = projection.digest  # type: ignore[attr-defined]
    encoder = _encoders.get(key) if key else None
    if encoder is None:
        matrix = list(projection.matrix)  # type: ignore[attr-defined]
        offset = list(projection.offset)  # type: ignore[attr-defined]
        key = key or projection_digest(matrix, offset)
        k = len(offset)
        encoder = SemanticEncoder(
            np.asarray(matrix, dtype=np.float32).reshape(k, EMBEDDING_DIM),
            np.asarray(offset, dtype=np.float32),
        )
        if len(_encoders) >= _ENCODER_CACHE_SIZE:
            _encoders.clear()
        _encoders[key] = encoder
    return encoder
