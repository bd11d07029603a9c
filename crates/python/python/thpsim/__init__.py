"""thpsim: a deterministic simulator of Linux transparent huge pages.

run() and compare() take scenario text or a path to a .thps file and return plain dicts
(the `thpsim run --json` schema); checkpoints() and pages() turn runs into pandas
DataFrames when pandas is installed.
"""
import json
import os

from . import _thpsim

__all__ = ["run", "compare", "checkpoints", "pages"]


def _source(scenario):
    if "\n" not in scenario and os.path.exists(scenario):
        with open(scenario) as f:
            return f.read(), scenario
    return scenario, "<python>"


def _sets(sets):
    return [(str(k), str(v)) for k, v in (sets or {}).items()]


def run(scenario, kernel=None, sets=None):
    """Runs a scenario (text or file) on the model; the run as a dict."""
    src, name = _source(scenario)
    return json.loads(_thpsim.run_json(src, name, kernel, _sets(sets)))


def compare(scenario, variants):
    """Runs a scenario under each variant, a dict {"kernel": ..., "sets": {...}} or a
    kernel name; a list of runs."""
    src, name = _source(scenario)
    vs = []
    for v in variants:
        if isinstance(v, str):
            vs.append((v, []))
        else:
            vs.append((v.get("kernel"), _sets(v.get("sets"))))
    return json.loads(_thpsim.compare_json(src, vs, name))


def _rows_checkpoints(runs):
    for r in runs:
        for c in r["checkpoints"]:
            row = {"variant": r["variant"], "checkpoint": c["label"], "minflt": c["minflt"]}
            row.update(c["counters"])
            yield row


def _rows_pages(runs):
    for r in runs:
        for c in r["checkpoints"]:
            for m in c["mappings"]:
                for backing, n in m["pages"]:
                    yield {"variant": r["variant"], "checkpoint": c["label"],
                           "mapping": m["name"], "backing": backing, "pages": n}


def _frame(rows):
    rows = list(rows)
    try:
        import pandas
    except ImportError:
        return rows
    return pandas.DataFrame(rows)


def checkpoints(runs):
    """One row per (run, checkpoint) with every counter delta: a DataFrame with pandas,
    else a list of dicts."""
    return _frame(_rows_checkpoints(runs if isinstance(runs, list) else [runs]))


def pages(runs):
    """One row per page-map run (variant, checkpoint, mapping, backing, pages)."""
    return _frame(_rows_pages(runs if isinstance(runs, list) else [runs]))
