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


def pin_refusal(field: str, shown: str, actual: str, pinned: str) -> str:
    """The message refusing a file whose sha256 is not the pinned one: it names both hashes."""
    return f"{field}.sha256: refusing to load {shown}: its sha256 is {actual}, the spec pins {pinned}"


def load_pinned_model(path: Path, pinned_sha256: str, shown: str | None = None) -> Any:
    """joblib-load `path` only if its sha256 equals the pinned one (unpickling runs code).

    `shown` names the file in messages (the URI it was fetched from); default: the path.
    """
    name = shown or str(path)
    if not path.is_file():
        where = f" (fetched to {path})" if shown else ""
        raise ModelError(f"spec.processor.model.{'uri' if shown else 'path'}: model file {name}{where} does not exist")
    actual = file_sha256(path)
    if actual != pinned_sha256.lower():
        raise ModelError(pin_refusal("spec.processor.model", name, actual, pinned_sha256))
    import joblib

    try:
        model = joblib.load(path)
    except Exception as exc:  # noqa: BLE001 - unpickling raises whatever the pickled classes raise
        raise ModelError(f"spec.processor.model.path: cannot load {name}: {load_failure(path, exc)}") from None
    if not hasattr(model, "predict_proba") or not hasattr(model, "classes_"):
        raise ModelError(f"spec.processor.model.path: {name} holds a {type(model).__name__}, "
                         "expected a fitted classifier with predict_proba and classes_")
    return model


# Leading bytes of the formats a model file is most often confused with, and of joblib's own.
_COMPRESSED = {b"\x1f\x8b": "gzip", b"BZh": "bz2", b"\xfd7zXZ\x00": "xz", b"\x5d\x00\x00": "lzma",
               b"\x04\x22\x4d\x18": "lz4", b"x\x01": "zlib", b"x\x5e": "zlib", b"x\x9c": "zlib", b"x\xda": "zlib"}
_OTHER = {b"PK\x03\x04": "a ZIP archive (skops, .npz or a PyTorch checkpoint?)",
          b"\x89HDF\r\n\x1a\n": "an HDF5 file (a Keras .h5 model?)",
          b"\x93NUMPY": "a NumPy .npy array", b"PAR1": "a Parquet file"}


def describe_model_bytes(head: bytes) -> tuple[str, bool]:
    """What the first bytes of a model file say it is, and whether joblib could read such a file."""
    if not head:
        return "the file is empty", False
    if head[:1] == b"\x80" and len(head) > 1 and 2 <= head[1] <= 5:
        return f"a pickle (protocol {head[1]})", True
    for magic, kind in _COMPRESSED.items():
        if head.startswith(magic):
            return f"a {kind}-compressed file", True
    for magic, kind in _OTHER.items():
        if head.startswith(magic):
            return kind, False
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:  # a character cut at the end of the head is still text
        text = head[:exc.start].decode("utf-8") if exc.start >= len(head) - 3 else ""
    if text and all(c.isprintable() or c in "\r\n\t" for c in text):
        return f"a text file (it starts {text[:24]!r})", False
    return f"unrecognised binary data (it starts {head[:8].hex(' ')})", False


def load_failure(path: Path, exc: BaseException) -> str:
    """Why joblib could not load `path`, in words: what the file is, then what went wrong."""
    with open(path, "rb") as fh:
        head = fh.read(64)
    kind, loadable = describe_model_bytes(head)
    expected = "expected a fitted scikit-learn classifier saved with joblib.dump"
    if not loadable:
        return f"{kind}, not a joblib or pickle file; {expected}"
    if isinstance(exc, ModuleNotFoundError):
        return f"{kind} that needs the Python module {exc.name!r}, which is not installed here"
    if isinstance(exc, EOFError):
        return f"{kind} that ends early (truncated?); {expected}"
    return f"{kind} that joblib cannot load ({type(exc).__name__}: {exc}); {expected}"


def model_feature_names(model: Any, configured: Sequence[str]) -> list[str]:
    """The input feature names: the spec's list, else the estimator's feature_names_in_."""
    learned = [str(n) for n in getattr(model, "feature_names_in_", [])]
    if configured:
        if learned and list(configured) != learned:
            missing = [n for n in learned if n not in configured]
            extra = [n for n in configured if n not in learned]
            how = (f"missing {missing}, extra {extra}" if missing or extra
                   else "the same names in another order")
            raise ModelError(f"spec.processor.model.features: {list(configured)} differ from the "
                             f"features the model was trained on: {learned} ({how})")
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
    # tolist() makes the Python floats and ints in C; indexing an array element by element
    # made a numpy scalar each (5% of a Rubin step process's main thread at batches of 1000).
    return [[{"classifier_name": name, "classifier_version": version, "class_name": c, "probability": p,
              "ranking": r} for c, p, r in zip(classes, p_row, r_row)]
            for p_row, r_row in zip(proba.tolist(), ranks.tolist())]
