"""One alert model for every survey: what processors see after decoding, and how each survey maps to it.

Processors never read a survey's own field names. They declare the fields of this model they
read (`oid`, `source.ra`, `detections.mag`, ...), and the decoder builds exactly those, straight
from the packet's bytes (avro.codegen), with each survey's names, version renames and units
resolved here, once per writer schema. Adding a survey means a framing, a schema family and one
`Survey` below: no processor changes.

An alert (every key present; a value the survey does not have is None):

    survey        "ztf" | "lsst"
    oid           the object id, a string that never collides across surveys and object kinds:
                  ZTF "ZTF18aaxjdyr" (objectId); LSST diaObject "170028095733776412" (the decimal
                  diaObjectId); LSST solar-system object "ss" + the decimal ssObjectId
    solarSystem   True for an alert on a solar-system object (LSST: diaObjectId 0 or null, no
                  diaObject, ssObjectId set); ZTF alerts are never flagged
    source        the detection that triggered the alert (a Source, below)
    detections    previous detections, a list of Sources, or None (ZTF prv_candidates, upper
                  limits included with mag None; LSST prvDiaSources)
    forced        forced photometry, a list of {sourceId, mjd, band, flux, fluxErr}, or None
                  (LSST prvDiaForcedSources; not mapped for ZTF)

A Source: sourceId (ZTF candid, LSST diaSourceId), ra, dec (degrees), mjd (ZTF jd - 2400000.5;
LSST midpointMjdTai, which in the synthetic samples of schemas 3.0-7.4 holds a Unix time: kept as
written), band ("g", "r", "i" for ZTF fid 1-3; LSST u g r i z y), mag and magErr (ZTF magpsf and
sigmapsf, AB), flux and fluxErr (LSST psfFlux and psfFluxErr, nJy), isNegative (a negative
difference: ZTF isdiffpos "f", LSST isNegative), reliability (the real/bogus score: ZTF drb, or
rb before schema 3.3; LSST reliability), refMag and refDistArcsec (ZTF magnr and distnr, the
nearest reference-image source), limitMag (ZTF diffmaglim).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

from step_runtime.step.avro.keep import Keep, Projection, project_record
from step_runtime.step.avro.schemas import record_fields, resolve_record

SOURCE_FIELDS = ("sourceId", "ra", "dec", "mjd", "band", "mag", "magErr", "flux", "fluxErr", "isNegative",
                 "reliability", "refMag", "refDistArcsec", "limitMag")
FORCED_FIELDS = ("sourceId", "mjd", "band", "flux", "fluxErr")
RECORDS = {"source": SOURCE_FIELDS, "detections": SOURCE_FIELDS, "forced": FORCED_FIELDS}
TOP_FIELDS = ("survey", "oid", "solarSystem")
ALL_FIELDS = frozenset([*TOP_FIELDS, *RECORDS])

# Conversions: Python expression templates over one value {v} (None stays None). The generated
# decoders inline the text; alert_model's reference path evaluates the same text (keep.converter).
JD_TO_MJD = "None if {v} is None else {v} - 2400000.5"
ZTF_BAND = "'g' if {v} == 1 else 'r' if {v} == 2 else 'i' if {v} == 3 else {v}"
ISDIFFPOS_NEGATIVE = "None if {v} is None else str({v}).lower() in ('f', '0', 'false')"

Alternatives = tuple[tuple[str, ...], str | None]  # the survey's names, first one a schema has wins; conversion


@dataclass(frozen=True)
class Survey:
    """How one survey's packets map onto the alert model."""

    name: str
    bands: tuple[str, ...]                 # bands the features are computed over
    band_codes: dict[str, str]             # canonical band -> how the survey writes it (for messages)
    measured: tuple[str, str]              # the measurement every detection carries: mag or flux, and its error
    records: dict[str, tuple[str, ...]]    # alert record -> the packet's field names holding it
    fields: dict[str, dict[str, Alternatives]]  # alert record -> its fields -> the packet's names
    top: dict[str, Alternatives]           # top-level alert fields read from top-level packet fields
    constants: dict[str, Any]
    oid_name: str                          # the packet's name for the object id, for messages
    oid_expected: str
    # Packet fields an oid is computed from, read into hidden keys that `finish` removes:
    # (alert record or "" for the top level, packet field, inner field or None, hidden key)
    oid_inputs: tuple[tuple[str, str, str | None, str], ...] = ()
    finish: Callable[[dict[str, Any]], None] | None = None
    # The columns that identify each alert in a processor's output (per survey, so that ZTF
    # outputs keep their historical names: oid candid ra dec jd).
    identity: Callable[[Sequence[dict[str, Any]]], dict[str, list[Any]]] = field(default=lambda alerts: {})

    def describe(self, path: str) -> str:
        """The packet's name for an alert-model path, for messages: source.mjd -> candidate.jd."""
        head, _, tail = path.partition(".")
        if not tail:
            if head == "oid":
                return self.oid_name
            return self.records.get(head, (head,))[0]
        record = self.records.get(head, (head,))[0]
        names = self.fields.get(head, {}).get(tail, ((tail,), None))[0]
        return f"{record}.{names[0] if names else tail}"


def _ztf_identity(alerts: Sequence[dict[str, Any]]) -> dict[str, list[Any]]:
    srcs = [a["source"] for a in alerts]
    return {"oid": [a["oid"] for a in alerts], "candid": [s["sourceId"] for s in srcs],
            "ra": [float(s["ra"]) for s in srcs], "dec": [float(s["dec"]) for s in srcs],
            "jd": [float(s["mjd"]) + 2400000.5 for s in srcs]}


def _lsst_identity(alerts: Sequence[dict[str, Any]]) -> dict[str, list[Any]]:
    srcs = [a["source"] for a in alerts]
    return {"survey": ["lsst"] * len(alerts), "oid": [a["oid"] for a in alerts],
            "diaSourceId": [s["sourceId"] for s in srcs], "ra": [float(s["ra"]) for s in srcs],
            "dec": [float(s["dec"]) for s in srcs], "mjd": [float(s["mjd"]) for s in srcs]}


def _lsst_finish(alert: dict[str, Any]) -> None:
    """oid and solarSystem from the ids: diaObjectId when non-zero (the diaSource's, else the
    diaObject's), else the ssObjectId. Real solar-system alerts carry diaObjectId 0 and no diaObject."""
    src = alert.get("source")
    obj = alert.pop("_diaObject", None)
    dia = ss = None
    if isinstance(src, dict):
        dia = src.pop("_diaObjectId", None)
        ss = src.pop("_ssObjectId", None)
    if not dia and isinstance(obj, dict):
        dia = obj.get("diaObjectId")
    if dia:
        alert["oid"], alert["solarSystem"] = str(dia), False
    elif ss:
        alert["oid"], alert["solarSystem"] = f"ss{ss}", True
    else:
        alert["oid"], alert["solarSystem"] = None, False


def _ztf_source() -> dict[str, Alternatives]:
    return {"sourceId": (("candid",), None), "ra": (("ra",), None), "dec": (("dec",), None),
            "mjd": (("jd",), JD_TO_MJD), "band": (("fid",), ZTF_BAND), "mag": (("magpsf",), None),
            "magErr": (("sigmapsf",), None), "flux": ((), None), "fluxErr": ((), None),
            "isNegative": (("isdiffpos",), ISDIFFPOS_NEGATIVE), "reliability": (("drb", "rb"), None),
            "refMag": (("magnr",), None), "refDistArcsec": (("distnr",), None),
            "limitMag": (("diffmaglim",), None)}


def _lsst_source() -> dict[str, Alternatives]:
    # the second name of each pair is the name before schema 5.0 (3.0 and 4.0); is_negative: 7.3-7.4
    return {"sourceId": (("diaSourceId",), None), "ra": (("ra",), None), "dec": (("dec", "decl"), None),
            "mjd": (("midpointMjdTai", "midPointTai"), None), "band": (("band", "filterName"), None),
            "mag": ((), None), "magErr": ((), None), "flux": (("psfFlux", "psFlux"), None),
            "fluxErr": (("psfFluxErr", "psFluxErr"), None), "isNegative": (("isNegative", "is_negative"), None),
            "reliability": (("reliability",), None), "refMag": ((), None), "refDistArcsec": ((), None),
            "limitMag": ((), None)}


ZTF = Survey(
    name="ztf", bands=("g", "r"), band_codes={"g": "1 (g)", "r": "2 (r)", "i": "3 (i)"}, measured=("mag", "magErr"),
    records={"source": ("candidate",), "detections": ("prv_candidates",), "forced": ()},
    fields={"source": _ztf_source(), "detections": _ztf_source(), "forced": {}},
    top={"oid": (("objectId",), None)}, constants={"survey": "ztf", "solarSystem": False},
    oid_name="objectId", oid_expected="a ZTF object id", identity=_ztf_identity)

LSST = Survey(
    name="lsst", bands=("u", "g", "r", "i", "z", "y"), band_codes={b: b for b in "ugrizy"},
    measured=("flux", "fluxErr"),
    records={"source": ("diaSource",), "detections": ("prvDiaSources",), "forced": ("prvDiaForcedSources",)},
    fields={"source": _lsst_source(), "detections": _lsst_source(),
            "forced": {"sourceId": (("diaForcedSourceId",), None), "mjd": (("midpointMjdTai", "midPointTai"), None),
                       "band": (("band", "filterName"), None), "flux": (("psfFlux", "psFlux"), None),
                       "fluxErr": (("psfFluxErr", "psFluxErr"), None)}},
    top={}, constants={"survey": "lsst"},
    oid_name="diaSource.diaObjectId", oid_expected="a non-zero diaObjectId (or a diaObject), or an ssObjectId",
    oid_inputs=(("source", "diaObjectId", None, "_diaObjectId"), ("source", "ssObjectId", None, "_ssObjectId"),
                ("", "diaObject", "diaObjectId", "_diaObject")),
    finish=_lsst_finish, identity=_lsst_identity)

SURVEYS = {s.name: s for s in (ZTF, LSST)}


def check_fields(fields: Iterable[str]) -> frozenset[str]:
    """The declared alert-model paths, refused (ValueError naming it) when one is not in the model."""
    out = set()
    for path in fields:
        head, _, tail = path.partition(".")
        ok = (not tail and (head in TOP_FIELDS or head in RECORDS)) or (tail and tail in RECORDS.get(head, ()))
        if not ok:
            known = [*TOP_FIELDS, *(f"{r}.{f}" for r, fs in RECORDS.items() for f in fs)]
            raise ValueError(f"alert field {path!r} is not in the alert model (known: {', '.join(known)})")
        out.add(path)
    return frozenset(out)


def _first_present(names: Sequence[str], present: Sequence[str]) -> str | None:
    return next((n for n in names if n in present), None)


def plan(survey: Survey, fields: frozenset[str], schema: Any) -> Projection:
    """The projection that decodes a packet with writer `schema` (fastavro-parsed) into the alert
    fields `fields`: the survey's names resolved against what this schema version has."""
    return _plan(survey, fields, record_fields(schema, schema) or [],
                 lambda name: record_fields(schema, _field_type(schema, name)) or [])


def plan_for_record(survey: Survey, fields: frozenset[str], record: dict[str, Any]) -> Projection:
    """The same projection, its names resolved against an already decoded record (no schema at hand)."""
    def inner(name: str) -> list[str]:
        value = record.get(name)
        if isinstance(value, list):
            value = next((v for v in value if isinstance(v, dict)), None)
        return list(value) if isinstance(value, dict) else []

    return _plan(survey, fields, list(record), inner)


def _plan(survey: Survey, fields: frozenset[str], top_names: list[str],
          inner_names: Callable[[str], list[str]]) -> Projection:
    fields = check_fields(fields) | {"survey", "oid", "solarSystem"}
    keep: list[tuple[str, Keep]] = []
    constants: dict[str, Any] = {}
    hidden: dict[str, list[tuple[str, Keep]]] = {}
    for rec, packet_field, inner, key in survey.oid_inputs:
        if inner is None:
            hidden.setdefault(rec, []).append((packet_field, Keep(key)))
        elif packet_field in top_names:
            keep.append((packet_field, Keep(key, inner=Projection(((inner, Keep(inner)),)))))
    for name, (names, convert) in survey.top.items():
        if name in fields:
            found = _first_present(names, top_names)
            if found is None:
                constants[name] = None
            else:
                keep.append((found, Keep(name, convert)))
    for rec, wanted in RECORDS.items():
        inner_fields = [f for f in wanted if f"{rec}.{f}" in fields or rec in fields]
        extra = hidden.get(rec, [])
        if not inner_fields and not extra:
            continue
        found = _first_present(survey.records.get(rec, ()), top_names)
        if found is None:
            constants[rec] = None
            continue
        present = inner_names(found)
        inner_keep: list[tuple[str, Keep]] = []
        inner_constants: list[tuple[str, Any]] = []
        for f in inner_fields:
            names, convert = survey.fields.get(rec, {}).get(f, ((), None))
            packet_name = _first_present(names, present)
            if packet_name is None:
                inner_constants.append((f, None))
            else:
                inner_keep.append((packet_name, Keep(f, convert)))
        inner_keep += [(n, k) for n, k in extra if n in present]
        keep.append((found, Keep(rec, inner=Projection(tuple(inner_keep), tuple(inner_constants)))))
    for name, value in survey.constants.items():
        if name in fields and name not in constants:
            constants[name] = value
    for name in ("oid", "solarSystem"):
        if name not in constants and not any(k.out == name for _, k in keep):
            constants[name] = None  # computed by finish
    return Projection(tuple(keep), tuple(constants.items()))


def _field_type(schema: Any, name: str) -> Any:
    """The type of the top-level field `name` of a record schema."""
    record = resolve_record(schema, schema)
    assert record is not None
    return next(f["type"] for f in record["fields"] if f["name"] == name)


def canonical(record: dict[str, Any], survey: Survey, projection: Projection) -> dict[str, Any]:
    """A whole decoded packet (fastavro's record) as the alert model: the reference path, for
    schemas no reader was generated for; equals what the generated reader plus `finish` give."""
    alert = project_record(record, projection)
    if survey.finish is not None:
        survey.finish(alert)
    return alert

