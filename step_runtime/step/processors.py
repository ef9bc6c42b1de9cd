"""Processors: a batch of records in, output records and per-message failures out.

Each processor works on the whole batch at once (numpy arrays, one predict/match call) and
reports a failure per message only for what cannot be computed for that message. Alert processors
(features, model on alerts, crossmatch) read the alert model (alert_model) of any survey and
declare in `reads` the alert fields they use: the decoder builds exactly those. The python
processor, and a model reading features from messages, get whole records (`reads` None).
"""
from __future__ import annotations

import importlib
import math
import sys
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import numpy as np

from step_runtime.spec.files import FetchSpec
from step_runtime.spec.pipelinestep import (
    CrossmatchProcessor,
    FeaturesProcessor,
    ModelProcessor,
    ProcessorSpec,
    PythonProcessor,
)
from step_runtime.step import features
from step_runtime.step.alert_model import Survey
from step_runtime.step.model import ModelError, load_pinned_model, model_feature_names, ranked_probabilities
from step_runtime.storage.fetch import FetchPolicy

Failure = tuple[int, str]  # (index in the batch's records, error)
Prepare = Callable[[list[dict[str, Any]]], list[dict[str, Any]]]


class Processor(Protocol):
    """What the step loop needs from a processor."""

    @property
    def reads(self) -> frozenset[str] | None:
        """The alert fields it reads; None: whole records (no alert validation)."""
        ...

    @property
    def prepare(self) -> Prepare | None:
        """Per-alert work that needs nothing but the alerts (features of each light curve), run
        where the batch is decoded, in the decode workers when the step has them: records in, one
        `Prepared` record out for each, holding only what `process` needs. None: nothing to do."""
        ...

    def process(self, records: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[Failure]]:
        """Outputs for the batch, and the records that failed (by index) with their error."""
        ...


# Identity columns a features message may carry, whichever survey wrote it (alert_model identity).
MESSAGE_IDENTITY = ("survey", "oid", "candid", "diaSourceId")


class Prepared(dict[str, Any]):
    """A record made by a processor's `prepare` (identifiers and features, no light curve)."""


FEATURES = "_features"  # a Prepared record's feature vector, in the model's feature order


def prepared(records: list[dict[str, Any]], prepare: Prepare) -> list[dict[str, Any]]:
    """`records` with those not prepared yet (decoded in the step process, or in a worker whose
    `prepare` failed) prepared now, in their places."""
    todo = [i for i, r in enumerate(records) if not isinstance(r, Prepared)]
    if not todo:
        return records
    if len(todo) == len(records):
        return prepare(records)
    out = list(records)
    for i, rec in zip(todo, prepare([records[i] for i in todo]), strict=True):
        out[i] = rec
    return out


def _need_survey(survey: Survey | None, what: str) -> Survey:
    if survey is None:
        raise ValueError(f"spec.processor.{what} reads alerts: the source format must be ztf-avro or lsst-avro")
    return survey


def _flux_survey(survey: Survey) -> bool:
    return survey.measured[0] == "flux"


def _rows(columns: dict[str, Sequence[Any]], n: int) -> list[dict[str, Any]]:
    """Columns -> list of row dicts (numpy arrays become plain Python values)."""
    lists = {k: (v.tolist() if isinstance(v, np.ndarray) else list(v)) for k, v in columns.items()}
    return [{k: lists[k][i] for k in lists} for i in range(n)]


class FeaturesStep:
    """Light-curve features per alert over the survey's bands (see step_runtime.step.features)."""

    reads = features.READS

    def __init__(self, spec: FeaturesProcessor, base_dir: Path, survey: Survey | None,
                 fetch: FetchPolicy | None = None) -> None:
        self.survey = _need_survey(survey, "features")
        self.min_detections = spec.min_detections
        self.prepare: Prepare | None = self._prepare

    def _prepare(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Each alert's output row: its identifiers and features."""
        if not records:
            return []
        cols: dict[str, Any] = dict(self.survey.identity(records))
        cols.update(features.alert_features(records, self.min_detections, self.survey.bands,
                                            _flux_survey(self.survey)))
        return [Prepared(row) for row in _rows(cols, len(records))]

    def process(self, records: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[Failure]]:
        return [dict(r) for r in prepared(records, self._prepare)], []


class ModelStep:
    """Every class probability of a pinned classifier, with its ranking."""

    def __init__(self, spec: ModelProcessor, base_dir: Path, survey: Survey | None,
                 fetch: FetchPolicy | None = None) -> None:
        path = _local_file("spec.processor.model", spec, base_dir, fetch)
        from_alert = spec.features_from == "alert"
        self.survey = _need_survey(survey, "model (featuresFrom: alert)") if from_alert else None
        self.model = load_pinned_model(path, spec.sha256, spec.uri)
        self.features = model_feature_names(self.model, spec.features)
        self.name = spec.classifier_name
        self.version = spec.classifier_version
        self.reads: frozenset[str] | None = features.READS if from_alert else None
        if self.survey is not None:
            produced = features.feature_names(self.survey.bands, _flux_survey(self.survey))
            missing = [n for n in self.features if n not in produced]
            if missing:
                extra = [n for n in produced if n not in self.features]
                raise ModelError(f"spec.processor.model: the model needs features {missing} that the features of "
                                 f"{self.survey.name} alerts do not include (missing); this step produces {extra} "
                                 f"that the model does not take (extra); all it produces: {', '.join(produced)}")
        self.classes = [str(c) for c in self.model.classes_]
        self.prepare: Prepare | None = self._prepare if self.survey is not None else None
        from threadpoolctl import ThreadpoolController

        # Found once (it scans the loaded libraries, ~10 ms); limiting per batch is then ~15 us.
        self.threadpools = ThreadpoolController()

    def _predict_proba(self, X: Any) -> np.ndarray:
        """predict_proba on one OpenMP thread.

        scikit-learn's gradient boosting predicts with an OpenMP team per call. For a batch of a
        few hundred rows on cores shared with the decode workers, the team's start-up and
        spin-waiting cost ten times the prediction itself (measured: ~400 us -> ~40 us per alert
        on 2 cores), so one thread is both faster and leaves the cores to decoding.
        """
        with self.threadpools.limit(limits=1, user_api="openmp"):
            return self.model.predict_proba(X)

    def _prepare(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Each alert's identifiers and the model's features (FEATURES), from its light curve."""
        assert self.survey is not None
        if not records:
            return []
        feats = features.alert_features(records, 1, self.survey.bands, _flux_survey(self.survey))
        matrix = np.column_stack([feats[n] for n in self.features]).tolist()
        ids = self.survey.identity(records)
        out: list[dict[str, Any]] = []
        for i, row in enumerate(matrix):
            rec = Prepared({k: v[i] for k, v in ids.items()})
            rec[FEATURES] = row
            out.append(rec)
        return out

    def _matrix(self, records: list[dict[str, Any]]) -> tuple[Any, dict[str, list[Any]], list[Failure]]:
        import pandas as pd

        if self.survey is not None:
            recs = prepared(records, self._prepare)
            keys = [k for k in recs[0] if k != FEATURES]
            X = pd.DataFrame([r[FEATURES] for r in recs], columns=self.features, dtype=float)
            return X, {k: [r[k] for r in recs] for k in keys}, []
        failures: list[Failure] = []
        keys = [k for k in MESSAGE_IDENTITY if k == "oid" or any(k in r for r in records)]
        ids: dict[str, list[Any]] = {k: [] for k in keys}
        rows = []
        for i, r in enumerate(records):
            oid = r.get("oid", r.get("objectId"))
            if not isinstance(oid, str) or not oid:
                failures.append((i, f"oid: missing or empty (got {oid!r}), expected the object id"))
                continue
            for k in keys:
                ids[k].append(oid if k == "oid" else r.get(k))
            rows.append([_as_float(r.get(n)) for n in self.features])
        return pd.DataFrame(rows, columns=self.features, dtype=float), ids, failures

    def process(self, records: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[Failure]]:
        if not records:
            return [], []
        X, ids, failures = self._matrix(records)
        bad = {i for i, _ in failures}
        kept = [i for i in range(len(records)) if i not in bad]
        if not kept:
            return [], failures
        try:
            proba = self._predict_proba(X)
        except Exception:  # noqa: BLE001 - find the rows that fail, keep the others
            proba, row_failures = _predict_row_by_row(self.model, X)
            failures += [(kept[j], err) for j, err in row_failures]
        ranked = ranked_probabilities(np.nan_to_num(proba, nan=-1.0), self.classes, self.name, self.version)
        failed = {i for i, _ in failures}
        out = []
        for j, i in enumerate(kept):
            if i in failed:
                continue
            rec = {k: v[j] for k, v in ids.items()}
            top = next(p for p in ranked[j] if p["ranking"] == 1)
            rec.update({"classifier_name": self.name, "classifier_version": self.version,
                        "class_name": top["class_name"], "probability": top["probability"],
                        "probabilities": ranked[j]})
            out.append(rec)
        return out, failures


def _as_float(v: Any) -> float:
    try:
        return math.nan if v is None else float(v)
    except (TypeError, ValueError):
        return math.nan


def _predict_row_by_row(model: Any, X: Any) -> tuple[np.ndarray, list[Failure]]:
    """Fallback when a whole-batch predict fails: predict each row, report the failing ones."""
    proba = np.full((len(X), len(model.classes_)), np.nan)
    failures: list[Failure] = []
    for j in range(len(X)):
        try:
            proba[j] = model.predict_proba(X.iloc[[j]])[0]
        except Exception as exc:  # noqa: BLE001 - a user's model may raise anything; dead-letter the row
            failures.append((j, f"model.predict_proba failed: {type(exc).__name__}: {exc}"))
    return proba, failures


class CrossmatchStep:
    """Nearest catalog object within a radius, using the shared SkyIndex (built once)."""

    reads = frozenset({"source.sourceId", "source.ra", "source.dec", "source.mjd"})
    prepare = None  # one vectorised match per batch: nothing per alert to hand to the workers

    def __init__(self, spec: CrossmatchProcessor, base_dir: Path, survey: Survey | None,
                 fetch: FetchPolicy | None = None) -> None:
        from step_runtime.crossmatch import SkyIndex

        self.survey = _need_survey(survey, "crossmatch")
        path = _local_file("spec.processor.crossmatch", spec, base_dir, fetch, verify=True)
        table = read_catalog(path, [spec.ra_column, spec.dec_column, spec.id_column, *spec.columns])
        self.ids = table[spec.id_column].to_numpy()
        self.extra = {c: table[c].to_numpy() for c in spec.columns}
        self.index = SkyIndex(table[spec.ra_column].to_numpy(dtype=float), table[spec.dec_column].to_numpy(dtype=float))
        self.radius = spec.radius_arcsec
        # Sort the catalog into zones now: every batch is then a binary-search lookup.
        self.index.prepare(self.radius)
        self.prefix = spec.prefix

    def match_arrays(self, ra_deg: np.ndarray, dec_deg: np.ndarray) -> dict[str, np.ndarray]:
        """Catalog columns of the nearest match of each position (None where there is none)."""
        m = self.index.nearest(ra_deg, dec_deg, self.radius)
        idx = np.asarray(m.index)
        hit = idx >= 0
        safe = np.where(hit, idx, 0)
        p = self.prefix

        def pick(values: np.ndarray) -> np.ndarray:
            col = values[safe].astype(object)
            col[~hit] = None
            return col

        cols = {f"{p}id": pick(self.ids), f"{p}separation_arcsec": np.asarray(m.separation_arcsec, dtype=float),
                f"{p}n_within": np.asarray(m.n_within)}
        for c, values in self.extra.items():
            cols[f"{p}{c}"] = pick(values)
        return cols

    def process(self, records: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[Failure]]:
        if not records:
            return [], []
        cols: dict[str, Any] = dict(self.survey.identity(records))
        cols.update(self.match_arrays(np.asarray(cols["ra"]), np.asarray(cols["dec"])))
        return _rows(cols, len(records)), []


def _local_file(field: str, spec: ModelProcessor | CrossmatchProcessor, base_dir: Path,
                fetch: FetchPolicy | None, verify: bool = False) -> Path:
    """The local path of a model or catalog, fetched first when it is a URI not fetched yet
    (in a pod the init container has fetched it; a local run fetches it here); with `verify`,
    checked against its pin (the model loader checks the model's pin itself)."""
    from step_runtime.storage.fetch import FetchError, ensure_local

    try:
        return ensure_local(field, spec, base_dir, fetch or FetchPolicy.from_spec(FetchSpec()), verify)
    except FetchError as exc:
        raise ValueError(str(exc)) from None


def read_catalog(path: Path, columns: list[str]) -> Any:
    """A catalog as a DataFrame (Parquet, or CSV with any compression pandas infers)."""
    import pandas as pd

    if not path.is_file():
        raise ValueError(f"spec.processor.crossmatch.catalog: {path} does not exist")
    if path.suffix == ".parquet":
        table = pd.read_parquet(path)
    else:
        table = pd.read_csv(path)
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"spec.processor.crossmatch: catalog {path} has no column(s) {missing} "
                         f"(columns: {list(table.columns)[:20]})")
    return table


class PythonStep:
    """A user's module:function(records, config) -> list[dict], called once per batch with whole
    decoded records (cutouts included). If the call raises for the batch, the step loop calls it
    again record by record, so only the records that fail go to the dead letter."""

    reads = None
    prepare = None

    def __init__(self, spec: PythonProcessor, base_dir: Path, survey: Survey | None = None,
                 fetch: FetchPolicy | None = None) -> None:
        if spec.path:
            extra = Path(spec.path)
            extra = extra if extra.is_absolute() else base_dir / extra
            if str(extra) not in sys.path:
                sys.path.insert(0, str(extra))
        module_name, func_name = spec.function.split(":")
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:  # noqa: BLE001 - a user's module may raise anything on import
            raise ValueError(f"spec.processor.python.function: cannot import {module_name!r}: {exc}") from None
        func = getattr(module, func_name, None)
        if not callable(func):
            raise ValueError(f"spec.processor.python.function: {module_name!r} has no function {func_name!r}")
        self.func: Callable[..., Any] = func
        self.config = dict(spec.config)

    def _call(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = self.func(records, self.config)
        if not isinstance(out, list) or not all(isinstance(r, dict) for r in out):
            raise TypeError(f"{self.func.__name__} returned {type(out).__name__}, expected a list of dicts")
        return out

    def process(self, records: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[Failure]]:
        if not records:
            return [], []
        return self._call(records), []


# A builder for every choice of ProcessorSpec, all called (spec, base_dir, survey, fetch): the
# choices are stated once, by ProcessorSpec's fields (a unit test checks that the sets are equal).
PROCESSORS: dict[str, Callable[..., Processor]] = {
    "model": ModelStep, "crossmatch": CrossmatchStep, "features": FeaturesStep, "python": PythonStep}


def build_processor(spec: ProcessorSpec, base_dir: Path, survey: Survey | None,
                    fetch: FetchPolicy | None = None) -> Processor:
    """The processor the spec chooses, for alerts of `survey` (None: the source carries messages);
    relative paths resolve against the manifest's folder; files given by a uri and not fetched
    yet are fetched under `fetch` (spec.fetch)."""
    return PROCESSORS[spec.kind()](spec.chosen(), base_dir, survey, fetch)
