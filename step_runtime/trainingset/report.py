"""The build's summary (JSON) and a PNG report a person would rather look at than read."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from step_runtime.spec.build_summary import BuildSummary
from step_runtime.trainingset.writers import atomic_path


def summary_document(summary: dict) -> dict:
    """The summary as `<output>.summary.json` holds it, checked against the BuildSummary model."""
    return BuildSummary.model_validate(summary).document()


def compact_summary(summary: dict) -> str:
    """The summary as compact JSON of at most 4096 bytes, for the pod's termination message.

    Rows in/out, matches, conflicts and unlabeled nearest matches per catalog, and the output
    location; per-class counts while there is room. What does not fit is shortened field by
    field (`BuildSummary.termination_message`), never cut mid-JSON.
    """
    return BuildSummary.model_validate(summary).termination_message()


def failure_message(error: str) -> str:
    """The termination message of a failed build: `{"phase": "Failed", "error": ...}`, at most 4096 bytes."""
    return BuildSummary.failed(error).termination_message()


def write_report_png(summary: dict, separations: dict[str, np.ndarray], path: Path) -> None:
    """Separation histogram per catalog (radius marked) and class counts, as one PNG.

    Drawn on a Figure of its own with the Agg canvas, not through pyplot: no global state, no
    GUI backend chosen behind the caller's back.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = list(separations)
    n_panels = len(names) + 1
    cols = min(3, n_panels)
    rows = int(np.ceil(n_panels / cols))
    fig = Figure(figsize=(4.2 * cols, 3.2 * rows))
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False)
    flat = axes.ravel()
    for ax, name in zip(flat, names):
        info = summary["catalogs"][name]
        radius = float(info["radius_arcsec"])
        seps = separations[name]
        ax.hist(seps, bins=np.linspace(0.0, radius * 1.05, 31), color="#4477aa")
        ax.axvline(radius, color="#cc3311", linestyle="--", label=f'radius {radius:g}"')
        ax.set_title(f"{name}: {info['matches']} matches, {info.get('conflicts', 0)} conflicts", fontsize=9)
        ax.set_xlabel("separation (arcsec)")
        ax.set_ylabel("sources")
        ax.legend(fontsize=8)
    ax = flat[len(names)]
    classes = summary.get("classes", {})
    labels = list(classes)[:25]
    ax.barh(labels[::-1], [classes[c] for c in labels][::-1], color="#228833")
    ax.set_title(f"classes ({summary.get('rows_out', 0)} rows out)", fontsize=9)
    ax.set_xlabel("objects")
    ax.tick_params(axis="y", labelsize=7)
    for ax in flat[n_panels:]:
        ax.axis("off")
    fig.suptitle(f"training set {summary.get('name', '')}: {summary.get('rows_in', 0)} sources in, "
                 f"policy {summary.get('policy')}", fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
