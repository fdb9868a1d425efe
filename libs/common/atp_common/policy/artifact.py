"""Trained router artifacts: feature spec, projection, per-model ridge weights, calibration, data digest."""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from atp.router.v1 import router_pb2
from atp_common.policy._math import RIDGE, invert
from atp_common.policy.features import FEATURE_NAMES

ARTIFACT_FORMAT = "atp-router-artifact"
ARTIFACT_VERSION = 1
SEMANTIC_MODEL = "wordllama/l2_supercat_256"
SEMANTIC_INPUT_DIM = 256
# The projection for semantic features without a trained artifact, shipped with the package.
DEFAULT_PROJECTION = Path(__file__).with_name("default_projection.json")


# Per-artifact digests and projection protos (snapshots are rebuilt often; each costs milliseconds), and
# loaded files. Entries hold the artifact itself, so an id is never reused while cached.
_CACHE_SIZE = 16
_digests: dict[int, tuple[RouterArtifact, str]] = {}
_projections: dict[int, tuple[RouterArtifact, router_pb2.SemanticProjection]] = {}


class ArtifactError(ValueError):
    """An artifact file that is missing, malformed or made for other features."""


@dataclass(frozen=True, slots=True)
class ModelWeights:
    """One model's fitted quality regression over the context vector.

    `theta` predicts quality (calibration folded in); `gram` is (X^T X + lambda I) / rows of the training
    design, so a learner can start from it as `rows` pseudo-observations.
    """

    theta: tuple[float, ...]
    gram: tuple[float, ...]
    rows: float
    calibration: tuple[float, float] = (1.0, 0.0)


@dataclass(frozen=True, slots=True)
class RouterArtifact:
    """A trained router: what the kernel needs to compute its features and score each candidate."""

    projection: tuple[float, ...]
    offset: tuple[float, ...]
    models: Mapping[str, ModelWeights]
    training: Mapping[str, object] = field(default_factory=dict)
    base_features: tuple[str, ...] = FEATURE_NAMES

    @property
    def semantic_dim(self) -> int:
        """k, the number of projected semantic features (0: base features only)."""
        return len(self.offset)

    @property
    def dim(self) -> int:
        """Length of the context vector: the base features, then the semantic ones."""
        return len(self.base_features) + self.semantic_dim

    def digest(self) -> str:
        """Digest of the artifact's content (what a snapshot names), computed once per artifact."""
        cached = _digests.get(id(self))
        if cached is not None and cached[0] is self:
            return cached[1]
        value = hashlib.sha256(
            orjson.dumps(_rounded(self.to_json()), option=orjson.OPT_SORT_KEYS)
        ).hexdigest()
        if len(_digests) >= _CACHE_SIZE:
            _digests.clear()
        _digests[id(self)] = (self, value[:16])
        return value[:16]

    def to_json(self) -> dict[str, object]:
        """The file's JSON form."""
        k = self.semantic_dim
        return {
            "format": ARTIFACT_FORMAT,
            "version": ARTIFACT_VERSION,
            "features": {
                "base": list(self.base_features),
                "semantic": {"model": SEMANTIC_MODEL, "dim": k} if k else None,
            },
            "projection": {
                "matrix": [
                    list(self.projection[i * SEMANTIC_INPUT_DIM : (i + 1) * SEMANTIC_INPUT_DIM])
                    for i in range(k)
                ],
                "offset": list(self.offset),
            },
            "objective": "quality",
            "models": {
                name: {
                    "theta": list(w.theta),
                    "gram": list(w.gram),
                    "rows": w.rows,
                    "calibration": {"slope": w.calibration[0], "intercept": w.calibration[1]},
                }
                for name, w in self.models.items()
            },
            "training": dict(self.training),
        }

    def training_summary(self) -> str:
        """The training record as JSON without the feature names (the spec is checked at load)."""
        summary = {k: v for k, v in self.training.items() if k != "features"}
        return orjson.dumps(summary, option=orjson.OPT_SORT_KEYS).decode()

    def save(self, path: str | Path) -> Path:
        """Write the artifact (JSON, floats rounded to 7 significant digits to keep it small)."""
        out = Path(path)
        out.write_bytes(orjson.dumps(_rounded(self.to_json())) + b"\n")
        return out

    def projection_proto(self) -> router_pb2.SemanticProjection | None:
        """The snapshot's form of the projection (None without semantic features)."""
        if not self.semantic_dim:
            return None
        cached = _projections.get(id(self))
        if cached is None or cached[0] is not self:
            projection = router_pb2.SemanticProjection(
                model=SEMANTIC_MODEL, matrix=self.projection, offset=self.offset, digest=self.digest()
            )
            if len(_projections) >= _CACHE_SIZE:
                _projections.clear()
            cached = _projections[id(self)] = (self, projection)
        return cached[1]

    def arm_prior(self, model: str, prior_rows: float) -> tuple[list[float], list[float], list[float]] | None:
        """(A, b, theta) for a learner starting from this model's fit, weighing `prior_rows` observations."""
        weights = self.models.get(model)
        if weights is None:
            return None
        dim = self.dim
        a = [prior_rows * g for g in weights.gram]
        for i in range(dim):
            a[i * dim + i] += RIDGE
        theta = list(weights.theta)
        b = [math.fsum(a[i * dim + j] * theta[j] for j in range(dim)) for i in range(dim)]
        return a, b, theta


def _rounded(value: object) -> object:
    if isinstance(value, float):
        return float(f"{value:.7g}")
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return value


def _floats(value: object, where: str) -> tuple[float, ...]:
    if not isinstance(value, list) or not all(isinstance(v, int | float) for v in value):
        raise ArtifactError(f"{where} must be a list of numbers")
    return tuple(float(v) for v in value)


def artifact_from_json(data: Mapping[str, Any], source: str = "artifact") -> RouterArtifact:
    """Validate and build an artifact from its JSON form."""
    if data.get("format") != ARTIFACT_FORMAT or data.get("version") != ARTIFACT_VERSION:
        raise ArtifactError(f"{source}: not an {ARTIFACT_FORMAT} version {ARTIFACT_VERSION} file")
    features = data.get("features")
    if not isinstance(features, dict):
        raise ArtifactError(f"{source}: features missing")
    base = tuple(str(n) for n in features.get("base", ()))
    if base != FEATURE_NAMES[: len(base)] or not base:
        raise ArtifactError(
            f"{source}: base features {list(base)} are not this build's {list(FEATURE_NAMES)}"
        )
    semantic = features.get("semantic")
    projection = data.get("projection") or {}
    if not isinstance(projection, dict):
        raise ArtifactError(f"{source}: projection must be an object")
    rows = projection.get("matrix") or []
    offset = _floats(projection.get("offset") or [], f"{source}: projection.offset")
    if semantic and semantic.get("model") != SEMANTIC_MODEL:
        raise ArtifactError(
            f"{source}: semantic model {semantic.get('model')!r}, this build has {SEMANTIC_MODEL}"
        )
    if (
        not isinstance(rows, list)
        or len(rows) != len(offset)
        or (semantic and semantic.get("dim") != len(offset))
    ):
        raise ArtifactError(f"{source}: projection has {len(rows)} rows for {len(offset)} offsets")
    matrix: list[float] = []
    for i, row in enumerate(rows):
        values = _floats(row, f"{source}: projection.matrix[{i}]")
        if len(values) != SEMANTIC_INPUT_DIM:
            raise ArtifactError(
                f"{source}: projection.matrix[{i}] has {len(values)} entries, not {SEMANTIC_INPUT_DIM}"
            )
        matrix.extend(values)
    dim = len(base) + len(offset)
    models: dict[str, ModelWeights] = {}
    for name, entry in (data.get("models") or {}).items():
        theta = _floats(entry.get("theta"), f"{source}: models.{name}.theta")
        gram = _floats(entry.get("gram"), f"{source}: models.{name}.gram")
        if len(theta) != dim or len(gram) != dim * dim:
            raise ArtifactError(f"{source}: models.{name} has weights for {len(theta)} features, not {dim}")
        calibration = entry.get("calibration") or {}
        models[str(name)] = ModelWeights(
            theta,
            gram,
            float(entry.get("rows", 0.0)),
            (float(calibration.get("slope", 1.0)), float(calibration.get("intercept", 0.0))),
        )
    training = data.get("training") or {}
    return RouterArtifact(tuple(matrix), offset, models, dict(training), base)


_cache: dict[tuple[str, int, int], RouterArtifact] = {}


def load_artifact(path: str | Path) -> RouterArtifact:
    """Read an artifact file (cached per path, size and mtime: snapshots are rebuilt often)."""
    target = Path(path)
    try:
        stat = os.stat(target)
    except OSError as exc:
        raise ArtifactError(f"artifact {str(target)!r}: {exc.strerror}") from exc
    key = (str(target.resolve()), stat.st_size, stat.st_mtime_ns)
    cached = _cache.get(key)
    if cached is not None:
        return cached
    try:
        data = orjson.loads(target.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise ArtifactError(f"artifact {str(target)!r} is not JSON: {exc}") from exc
    artifact = artifact_from_json(data, str(target))
    if len(_cache) >= _CACHE_SIZE:
        _cache.clear()
    _cache[key] = artifact
    return artifact


def default_semantic() -> RouterArtifact:
    """The shipped projection without trained weights: semantic features for learning from zero."""
    return load_artifact(DEFAULT_PROJECTION)


def route_artifact(artifact: str | None, semantic: bool) -> RouterArtifact | None:
    """The artifact a route's configuration names, the default projection for `semantic`, or None."""
    if artifact:
        return load_artifact(artifact)
    return default_semantic() if semantic else None


def learner_prior(
    artifact: RouterArtifact, model: str, prior_rows: float
) -> tuple[list[float], list[float], list[float]] | None:
    """(A, A^-1, b) to start a LinUCB arm from the artifact's fit, or None for a model it does not know."""
    prior = artifact.arm_prior(model, prior_rows)
    if prior is None:
        return None
    a, b, _ = prior
    return a, invert(a, artifact.dim), b
