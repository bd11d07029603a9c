"""thpsim: a deterministic simulator of Linux transparent huge pages.

run() and compare() take scenario text or a path to a .thps file and return plain dicts
(the `thpsim run --json` schema); sweep() runs the cartesian product of a settings grid;
checkpoints() and pages() turn runs into DataFrames (pandas, else polars, else lists of
dicts); import_pid() writes the scenario that rebuilds a live process (`thpsim import`).
"""
import itertools
import json
import os

from . import _thpsim

__all__ = ["run", "compare", "sweep", "import_pid", "checkpoints", "pages"]


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


def sweep(scenario, grid, kernels=None):
    """Runs a scenario under every combination of `grid` ({key: [values...]}, keys as in
    `--set`/`--grid`: sysfs knobs, switches) and of `kernels` (profile names; default the
    scenario's own). One row per (variant, checkpoint): the grid's values as columns, then
    `minflt` and every counter delta; a DataFrame when pandas or polars is installed."""
    keys = list(grid)
    for k in keys:
        if isinstance(grid[k], (str, bytes)) or not hasattr(grid[k], "__iter__"):
            raise TypeError(f"grid[{k!r}] must be a list of values")
    combos = list(itertools.product(*(list(grid[k]) for k in keys)))
    ks = list(kernels) if kernels else [None]
    variants, labels = [], []
    for kern in ks:
        for c in combos:
            variants.append({"kernel": kern, "sets": dict(zip(keys, c))})
            labels.append(({"kernel": kern} if kernels else {}) | dict(zip(keys, c)))
    runs = compare(scenario, variants)
    rows = []
    for lab, r in zip(labels, runs):
        for row in _rows_checkpoints([r]):
            rows.append(lab | row)
    # A counter a checkpoint does not list did not move: 0, so every row has every column.
    cols = {}
    for row in rows:
        cols.update(dict.fromkeys(row))
    rows = [{c: row.get(c, 0) for c in cols} for row in rows]
    return _frame(rows)


def import_pid(pid):
    """The scenario (text) that rebuilds a live process's anonymous private memory in the
    model, as `thpsim import --pid` writes it (Linux, root); run() it, or add ops to ask
    what khugepaged, MADV_COLLAPSE or a fork would do."""
    return _thpsim.import_pid(int(pid))


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
        return pandas.DataFrame(rows)
    except ImportError:
        pass
    try:
        import polars
        return polars.DataFrame(rows)
    except ImportError:
        return rows


def checkpoints(runs):
    """One row per (run, checkpoint) with every counter delta: a DataFrame with pandas
    (else polars), else a list of dicts."""
    return _frame(_rows_checkpoints(runs if isinstance(runs, list) else [runs]))


def pages(runs):
    """One row per page-map run (variant, checkpoint, mapping, backing, pages)."""
    return _frame(_rows_pages(runs if isinstance(runs, list) else [runs]))
