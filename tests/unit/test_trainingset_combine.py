"""Label maps, priorities, conflict policies and one-to-one matching on small tables."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from step_runtime.spec.common import SpecError, parse_spec
from step_runtime.spec.trainingset import TrainingSetBuildSpec
from step_runtime.trainingset.build import load_inputs, match_partition, merge_parts
from step_runtime.trainingset.combine import combine_labels, trust_order
from step_runtime.trainingset.labels import labels_as_text, map_labels


def _frame(**labels: list) -> pa.Table:
    n = len(next(iter(labels.values())))
    data: dict[str, object] = {"_row": np.arange(n)}
    for name, values in labels.items():
        data[f"{name}_label"] = pa.array(values, pa.string())
        data[f"{name}_id"] = pa.array([None if v is None else f"{name}{i}" for i, v in enumerate(values)], pa.string())
        data[f"{name}_sep_arcsec"] = [np.nan if v is None else 0.1 * (i + 1) for i, v in enumerate(values)]
    return pa.table(data)


# Rows: agree / conflict / only b / nothing.
LABELS = {"a": ["RRL", "RRL", None, None], "b": ["RRL", "EW", "EW", None]}


def test_trust_order_is_priority_then_list_order():
    assert trust_order(["a", "b", "c"], [1, 0, 1]) == ["b", "a", "c"]


def test_priority_policy_takes_the_most_trusted_and_flags_conflicts():
    out = combine_labels(_frame(**LABELS), ["a", "b"], "priority", keep_unlabeled=False)
    f = out.frame
    assert f["label"].to_pylist() == ["RRL", "RRL", "EW"]
    assert f["label_catalog"].to_pylist() == ["a", "a", "b"]
    assert f["label_catalog_id"].to_pylist() == ["a0", "a1", "b2"]
    assert f["conflict"].to_pylist() == [False, True, False]
    assert f["n_catalogs"].to_pylist() == [2, 2, 1]
    assert f["candidates"].to_pylist() == ["a:RRL;b:RRL", "a:RRL;b:EW", "b:EW"]
    assert out.conflicts == 1 and out.conflicts_by_catalog == {"a": 0, "b": 1}
    assert out.unlabeled == 1


def test_priority_order_reversed():
    out = combine_labels(_frame(**LABELS), ["b", "a"], "priority", keep_unlabeled=False)
    assert out.frame["label"].to_pylist() == ["RRL", "EW", "EW"]
    assert out.conflicts_by_catalog == {"b": 0, "a": 1}


def test_agree_policy_keeps_conflicts_unlabeled_for_review():
    out = combine_labels(_frame(**LABELS), ["a", "b"], "agree", keep_unlabeled=False)
    f = out.frame
    assert f["label"].to_pylist() == ["RRL", None, "EW"]
    assert f["label_catalog"].to_pylist() == ["a", None, "b"]
    assert f["conflict"].to_pylist() == [False, True, False]
    assert f["separation_arcsec"][1].as_py() is None


def test_drop_policy_removes_conflicts():
    out = combine_labels(_frame(**LABELS), ["a", "b"], "drop", keep_unlabeled=False)
    assert out.frame["label"].to_pylist() == ["RRL", "EW"]
    assert out.dropped_conflicts == 1


def test_keep_unlabeled_writes_unmatched_rows():
    out = combine_labels(_frame(**LABELS), ["a", "b"], "priority", keep_unlabeled=True)
    assert len(out.frame) == 4 and out.frame["label"][3].as_py() is None
    assert out.frame["candidates"][3].as_py() is None


def test_unknown_policy():
    with pytest.raises(ValueError, match="policy must be one of"):
        combine_labels(_frame(**LABELS), ["a", "b"], "vote", keep_unlabeled=False)


def test_labels_as_text():
    assert labels_as_text(pa.array([1.0, 2.0, None, 2.5])).to_pylist() == ["1", "2", None, "2.5"]
    assert labels_as_text(pa.array([1.0, np.nan], from_pandas=False)).to_pylist() == ["1", None]
    assert labels_as_text(pa.array([" rr_lyr ", "", None])).to_pylist() == ["rr_lyr", None, None]
    assert labels_as_text(pa.array([1, 6])).to_pylist() == ["1", "6"]
    assert labels_as_text(pa.array([True, False])).to_pylist() == ["True", "False"]


def test_map_labels_drop_and_keep():
    labels = pa.array(["RRab", "RRc", "EW", None])
    dropped = map_labels(labels, {"RRab": "RRL", "RRc": "RRL"}, "drop", "cat")
    assert dropped.labels.to_pylist() == ["RRL", "RRL", None, None]
    assert dropped.unmapped == 1 and dropped.unlabeled == 1 and dropped.unmapped_values == ["EW"]
    kept = map_labels(labels, {"RRab": "RRL", "RRc": "RRL"}, "keep", "cat")
    assert kept.labels.to_pylist() == ["RRL", "RRL", "EW", None]
    same = map_labels(labels, {}, "drop", "cat")
    assert same.labels.to_pylist() == ["RRab", "RRc", "EW", None]


def test_label_map_keys_from_yaml_integers_are_text():
    spec = parse_spec(TrainingSetBuildSpec, {
        "source": {"path": "s.csv"},
        "catalogs": [{"name": "linear", "path": "l.dat", "labelColumn": "LCtype",
                      "labelMap": {1: "RRL", 2: "RRL", 6.0: "DSCT"}, "radiusArcsec": 2}],
        "output": {"path": "o.parquet"}}, "t.yaml")
    assert spec.catalogs[0].label_map == {"1": "RRL", "2": "RRL", "6": "DSCT"}


@pytest.mark.parametrize("catalog,message", [
    ({"radiusArcsec": 0, "label": "X"}, "spec.catalogs[0].radiusArcsec: Input should be greater than 0"),
    ({"radiusArcsec": -1, "label": "X"}, "spec.catalogs[0].radiusArcsec: Input should be greater than 0"),
    ({"radiusArcsec": 1}, "exactly one of labelColumn or label"),
    ({"radiusArcsec": 1, "label": "X", "labelColumn": "c"}, "exactly one of labelColumn or label"),
])
def test_spec_errors_name_the_field(catalog, message):
    with pytest.raises(SpecError) as exc:
        parse_spec(TrainingSetBuildSpec, {
            "source": {"path": "s.csv"}, "catalogs": [{"name": "c", "path": "c.csv", **catalog}],
            "output": {"path": "o.parquet"}}, "t.yaml")
    assert message in str(exc.value) and "t.yaml" in str(exc.value)


def test_spec_refuses_repeated_catalog_names_and_bad_parallelism():
    base = {"source": {"path": "s.csv"}, "output": {"path": "o.parquet"}}
    cat = {"name": "c", "path": "c.csv", "label": "X", "radiusArcsec": 1}
    with pytest.raises(SpecError, match=r"catalog names must be unique, repeated: \['c'\]"):
        parse_spec(TrainingSetBuildSpec, {**base, "catalogs": [cat, cat]}, "t.yaml")
    with pytest.raises(SpecError, match=r"spec.parallelism: Input should be greater than or equal to 1"):
        parse_spec(TrainingSetBuildSpec, {**base, "catalogs": [cat], "parallelism": 0}, "t.yaml")


def _build(tmp_path: Path, combine: dict, catalogs_csv: dict[str, str], source_csv: str):
    (tmp_path / "src.csv").write_text(source_csv)
    catalogs = []
    for i, (name, text) in enumerate(catalogs_csv.items()):
        (tmp_path / f"{name}.csv").write_text(text)
        catalogs.append({"name": name, "path": f"{name}.csv", "idColumn": "cid", "labelColumn": "cls",
                         "radiusArcsec": 2.0, "priority": i})
    spec = parse_spec(TrainingSetBuildSpec, {"source": {"path": "src.csv", "idColumn": "oid"},
                                             "catalogs": catalogs, "combine": combine,
                                             "output": {"path": "o.parquet"}}, "t.yaml")
    inputs = load_inputs(spec, tmp_path)
    return merge_parts([match_partition(inputs, 0, 1)], spec)


def test_one_to_one_gives_a_catalog_row_to_its_nearest_source_only(tmp_path):
    # Two sources 0.5" and 1.0" from one catalog object; best-per-source labels both.
    arcsec = 1 / 3600
    source = f"oid,ra,dec\nnear,{10 + 0.5 * arcsec},0\nfar,{10 - 1.0 * arcsec},0\n"
    catalog = "cid,ra,dec,cls\nk1,10,0,RRL\n"
    best = _build(tmp_path, {"matching": "best-per-source"}, {"cat": catalog}, source)
    assert best.frame["id"].to_pylist() == ["near", "far"]
    one = _build(tmp_path, {"matching": "one-to-one", "keepUnlabeled": True}, {"cat": catalog}, source)
    assert one.frame["label"].to_pylist() == ["RRL", None]
    assert one.stats["catalogs"]["cat"]["lost_one_to_one"] == 1
    assert one.frame["cat_id"][1].as_py() is None


def test_end_to_end_labels_on_a_small_sky(tmp_path):
    arcsec = 1 / 3600
    source = ("oid,ra,dec\n"
              f"s1,100,20\n"                       # matched by both, they agree after mapping
              f"s2,200,-30\n"                      # matched by both, they disagree
              f"s3,300,{60 + 1.5 * arcsec}\n"      # only the second catalog, 1.5" away
              f"s4,50,50\n")                       # nothing
    first = f"cid,ra,dec,cls\nA1,100,{20 + 0.3 * arcsec},rr_lyr\nA2,200,-30,rr_lyr\n"
    second = f"cid,ra,dec,cls\nB1,100,20,RRab\nB2,200,{-30 + 1 * arcsec},EW\nB3,300,60,EW\nB4,300,{60 - 5 * arcsec},RRab\n"
    merged = _build(tmp_path, {"policy": "priority"}, {"first": first, "second": second}, source)
    f = merged.frame.to_pandas().set_index("id")
    assert list(f.index) == ["s1", "s2", "s3"]
    assert f.loc["s1", "candidates"] == "first:rr_lyr;second:RRab"  # no label map: a conflict
    assert f["conflict"].tolist() == [True, True, False]
    assert f.loc["s3", "label"] == "EW" and f.loc["s3", "label_catalog_id"] == "B3"
    assert abs(f.loc["s3", "separation_arcsec"] - 1.5) < 1e-6
    assert merged.stats["classes"] == {"rr_lyr": 2, "EW": 1}
    assert merged.stats["catalogs"]["second"]["matches"] == 3
