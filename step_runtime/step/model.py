"""Loading a pinned scikit-learn model and turning its probabilities into ranked records."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Sequence

import numpy as np


class ModelError(ValueError):
    """The model cannot be used: missing file, hash mismatch, or unusable estimator."""


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_pinned_model(path: Path, pinned_sha256: str) -> Any:
    """joblib-load `path` only if its sha256 equals the pinned one (unpickling runs code)."""
    if not path.is_file():
        raise ModelError(f"spec.processor.model.path: model file {path} does not exist")
    actual = file_sha256(path)
    if actual != pinned_sha256.lower():
        raise ModelError(
            f"spec.processor.model.sha256: refusing to load {path}: its sha256 is {actual}, "
            f"the spec pins {pinned_sha256}")
    import joblib

    try:
        model = joblib.load(path)
    except Exception as exc:  # noqa: BLE001
        raise ModelError(f"spec.processor.model.path: cannot load {path} with joblib: {exc}") from None
    if not hasattr(model, "predict_proba") or not hasattr(model, "classes_"):
        raise ModelError(f"spec.processor.model.path: {path} holds a {type(model).__name__}, "
                         "expected a fitted classifier with predict_proba and classes_")
    return model


def model_feature_names(model: Any, configured: Sequence[str]) -> list[str]:
    """The input feature names: the spec's list, else the estimator's feature_names_in_."""
    learned = [str(n) for n in getattr(model, "feature_names_in_", [])]
    if configured:
        if learned and list(configured) != learned:
            raise ModelError(f"spec.processor.model.features: {list(configured)} differ from the "
                             f"features the model was trained on: {learned}")
        return list(configured)
    if not learned:
        raise ModelError("spec.processor.model.features: empty, and the model has no feature_names_in_; "
                         "list the input feature names in order")
    return learned


def ranked_probabilities(proba: np.ndarray, classes: Sequence[str], name: str,
                         version: str) -> list[list[dict[str, Any]]]:
    """Per row, every class with its probability and ranking (1 = most probable), ALeRCE-style."""
    order = np.argsort(-proba, axis=1, kind="stable")
    ranks = np.empty_like(order)
    rows = np.arange(proba.shape[0])[:, None]
    ranks[rows, order] = np.arange(1, proba.shape[1] + 1)[None, :]
    classes = [str(c) for c in classes]
    out = []
    for i in range(proba.shape[0]):
        out.append([{"classifier_name": name, "classifier_version": version, "class_name": classes[j],
                     "probability": float(proba[i, j]), "ranking": int(ranks[i, j])}
                    for j in range(proba.shape[1])])
    return out
