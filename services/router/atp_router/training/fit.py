"""Fit a router artifact: a projection of the prompt embedding, and a calibrated ridge regression per model."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from atp.common.v1 import chat_pb2
from atp_common.policy.artifact import ModelWeights, RouterArtifact
from atp_common.policy.features import FEATURE_NAMES, compute_features
from atp_common.policy.semantic import embed_texts, semantic_text

# Projected semantic dimensions: small enough that LinUCB state stays small (29 x 29 per arm with the
# base features), large enough to hold the main topics of the traffic.
DEFAULT_SEMANTIC_DIM = 16
# Ridge strengths tried by cross-validation (on standardised-scale features).
RIDGE_GRID = (1.0, 10.0, 100.0, 1000.0)
FOLDS = 5
_NO_PARAMS = chat_pb2.GenerationParams()


@dataclass(frozen=True, slots=True)
class Example:
    """One training row: the request, and the observed quality per model with its importance weight."""

    messages: Sequence[chat_pb2.ChatMessage]
    quality: Mapping[str, float]
    weight: Mapping[str, float]


def learn_projection(embeddings: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(P [k, 256], offset [k]): the top-k principal directions of the embeddings, scaled to unit variance."""
    mu = embeddings.mean(axis=0)
    centred = embeddings - mu
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    k = min(k, vt.shape[0])
    scale = singular[:k] / np.sqrt(max(len(embeddings) - 1, 1))
    matrix = vt[:k] / np.maximum(scale, 1e-9)[:, None]
    # A deterministic sign per direction, so the same data gives the same file.
    signs = np.sign(matrix[np.arange(k), np.abs(matrix).argmax(axis=1)])
    matrix = matrix * signs[:, None]
    return matrix.astype(np.float32), (matrix @ mu).astype(np.float32)


def design(
    messages: Sequence[Sequence[chat_pb2.ChatMessage]], matrix: np.ndarray, offset: np.ndarray
) -> np.ndarray:
    """Context vectors as the kernel sees them: the base features, then the projected embedding."""
    base = np.array([list(compute_features(m, _NO_PARAMS, False).vector) for m in messages], dtype=np.float64)
    if not len(offset):
        return base
    embedded = embed_texts([semantic_text(m) for m in messages]).astype(np.float64)
    return np.hstack([base, embedded @ matrix.T.astype(np.float64) - offset.astype(np.float64)])


def _solve(x: np.ndarray, y: np.ndarray, w: np.ndarray, lam: float) -> np.ndarray:
    xw = x * w[:, None]
    # The bias (column 0) is not shrunk: the mean quality is not something to pull toward zero.
    penalty = lam * np.eye(x.shape[1])
    penalty[0, 0] = 1e-6
    return np.linalg.solve(x.T @ xw + penalty, xw.T @ y)


def _folds(n: int, folds: int) -> list[np.ndarray]:
    # Contiguous blocks: logged traffic drifts, so neighbouring rows are alike and a random split flatters.
    return [block for block in np.array_split(np.arange(n), folds) if len(block)]


def fit_model(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[ModelWeights, dict[str, float]]:
    """A calibrated ridge regression of quality on x, weights w (importance weights; 0: not observed)."""
    blocks = _folds(len(y), FOLDS)
    best: tuple[float, float, np.ndarray] | None = None
    for lam in RIDGE_GRID:
        predictions = np.zeros(len(y))
        for block in blocks:
            train = np.ones(len(y), dtype=bool)
            train[block] = False
            predictions[block] = x[block] @ _solve(x[train], y[train], w[train], lam)
        error = float(np.sum(w * (predictions - y) ** 2) / max(np.sum(w), 1e-12))
        if best is None or error < best[0]:
            best = (error, lam, predictions)
    assert best is not None
    error, lam, held_out = best
    # Linear calibration of the held-out predictions: the kernel compares them with prices.
    design_matrix = np.stack([held_out, np.ones(len(y))], axis=1)
    slope, intercept = _solve(design_matrix, y, w, 1e-6)
    slope = float(np.clip(slope, 0.0, 2.0))
    theta = _solve(x, y, w, lam) * slope
    theta[0] += float(intercept)
    observed = max(float(np.sum(w)), 1.0)
    gram = ((x * w[:, None]).T @ x + lam * np.eye(x.shape[1])) / observed
    stats = {"ridge": lam, "held_out_mse": error, "rows": float(np.count_nonzero(w))}
    weights = ModelWeights(
        tuple(theta.tolist()),
        tuple(gram.ravel().tolist()),
        float(np.count_nonzero(w)),
        (slope, float(intercept)),
    )
    return weights, stats


def digest_examples(examples: Sequence[Example]) -> str:
    """sha256 over the training rows (text, qualities, weights), to name the data an artifact came from."""
    h = hashlib.sha256()
    for example in examples:
        h.update(semantic_text(example.messages).encode())
        for model in sorted(example.quality):
            h.update(f"{model}={example.quality[model]:.6g}/{example.weight.get(model, 0.0):.6g};".encode())
    return "sha256:" + h.hexdigest()


def fit_vectors(
    x: np.ndarray,
    quality: np.ndarray,
    weight: np.ndarray,
    models: Sequence[str],
    projection: tuple[np.ndarray, np.ndarray],
    training: dict[str, object],
) -> RouterArtifact:
    """One regression per model over context vectors x [n, d]; quality and weight are [n, models]."""
    if len(x) < FOLDS * 2:
        raise ValueError(f"need at least {FOLDS * 2} training rows, got {len(x)}")
    fitted: dict[str, ModelWeights] = {}
    report: dict[str, object] = {}
    for column, model in enumerate(models):
        if np.any(weight[:, column] > 0):
            fitted[model], report[model] = fit_model(x, quality[:, column], weight[:, column])
    matrix, offset = projection
    training = {
        **training,
        "model_class": "ridge per model on base + projected semantic features, calibrated",
        "features": list(FEATURE_NAMES),
        "fit": report,
    }
    return RouterArtifact(tuple(matrix.ravel().tolist()), tuple(offset.tolist()), fitted, training)


def train(
    examples: Sequence[Example],
    models: Sequence[str],
    *,
    semantic_dim: int = DEFAULT_SEMANTIC_DIM,
    source: str = "",
) -> RouterArtifact:
    """Fit the projection (unsupervised, on the training prompts) and one regression per model."""
    messages = [e.messages for e in examples]
    if semantic_dim > 0:
        matrix, offset = learn_projection(embed_texts([semantic_text(m) for m in messages]), semantic_dim)
    else:
        matrix, offset = np.zeros((0, 256), dtype=np.float32), np.zeros(0, dtype=np.float32)
    x = design(messages, matrix, offset)
    quality = np.array([[e.quality.get(m, 0.0) for m in models] for e in examples])
    weight = np.array([[e.weight.get(m, 0.0) for m in models] for e in examples])
    training = {"digest": digest_examples(examples), "rows": len(examples), "source": source}
    return fit_vectors(x, quality, weight, models, (matrix, offset), training)
