"""The build's summary (JSON) and a PNG report a person would rather look at than read."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from step_runtime.trainingset.writers import atomic_path

TERMINATION_LIMIT = 4096  # bytes Kubernetes keeps of a termination message


def compact_summary(summary: dict) -> str:
    """The summary as compact JSON of at most 4096 bytes, for the pod's termination message.

    Rows in/out, matches and conflicts per catalog, and the output location always fit;
    per-class counts are kept only while there is room.
    """
    catalogs = {name: {"matches": c.get("matches"), "conflicts": c.get("conflicts")}
                for name, c in summary.get("catalogs", {}).items()}
    small = {
        "phase": summary.get("phase"),
        "rows_in": summary.get("rows_in"),
        "rows_out": summary.get("rows_out"),
        "conflicts": summary.get("conflicts"),
        "output": summary.get("output"),
        "catalogs": catalogs,
        "classes": summary.get("classes", {}),
    }
    text = json.dumps(small, separators=(",", ":"), default=str)
    if len(text.encode()) > TERMINATION_LIMIT:
        small["classes"] = dict(list(small["classes"].items())[:20])
        text = json.dumps(small, separators=(",", ":"), default=str)
    if len(text.encode()) > TERMINATION_LIMIT:
        small.pop("classes")
        small["catalogs"] = dict(list(catalogs.items())[:30])
        text = json.dumps(small, separators=(",", ":"), default=str)
    return text[:TERMINATION_LIMIT]


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
