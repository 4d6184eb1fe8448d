"""The report's tables with our runs beside the published numbers."""

import math
from pathlib import Path

import pandas as pd

from common.paths import check_profile, results_dir
from common.published import TABLES, published_table
from common.results import RESULT_FIELDS, atomic_path, shortened_flags

NOT_RUN = "not run"
SKIPPED_FILES = {"bench.csv"}  # benchmark timings, not training runs
COLUMNS = ["row", "dataset", "published", "ours (best val)", "ours (final)", "difference",
           "epochs", "wall time", "run"]
SHORTENED_COLUMNS = ["run", "experiment", "dataset", "epochs", "test acc (best val)", "test acc (final)"]
SHORTENED_HEADING = "Shortened runs (--epochs; not compared with the report)"


def collect_results(profile: str) -> pd.DataFrame:
    """Every run recorded in the profile's results CSVs, one row per run."""
    frames = []
    for path in sorted(results_dir(check_profile(profile)).glob("*.csv")):
        if path.name in SKIPPED_FILES:
            continue
        try:
            frame = pd.read_csv(path)
        except (pd.errors.EmptyDataError, pd.errors.ParserError):
            continue  # an empty or foreign file is not a results CSV
        if "run_id" in frame.columns and not frame.empty:
            frames.append(frame)
    if not frames:
        return pd.DataFrame(columns=RESULT_FIELDS)
    results = pd.concat(frames, ignore_index=True)
    # Older CSVs may lack a newer column; the tables only need it to exist.
    return results.reindex(columns=list(dict.fromkeys(RESULT_FIELDS + list(results.columns))))


def _number(value) -> float:
    """A float, or NaN for anything missing or not numeric."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return math.nan
    return value


def _accuracy(acc, loss=None) -> str:
    """`0.8158`, or `0.8158 (loss 0.5455)` when a loss is known."""
    acc, loss = _number(acc), _number(loss)
    if math.isnan(acc):
        return "n/a"
    return f"{acc:.4f}" if math.isnan(loss) else f"{acc:.4f} (loss {loss:.4f})"


def _duration(seconds) -> str:
    """Wall time a person reads at a glance: `45 s`, `31 min`, `2 h 05 min`."""
    seconds = _number(seconds)
    if math.isnan(seconds):
        return "n/a"
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def _epochs(values: pd.Series) -> str:
    values = pd.to_numeric(values, errors="coerce").dropna()
    if values.empty:
        return "n/a"
    low, high = int(values.min()), int(values.max())
    return str(low) if low == high else f"{low}-{high}"


def _run_label(runs: pd.DataFrame) -> str:
    """The run id of a single run; otherwise how many seeds (or runs) the mean covers."""
    if len(runs) == 1:
        return str(runs["run_id"].iloc[0])
    seeds = runs["seed"].dropna().nunique()
    return f"{len(runs)} seeds" if seeds == len(runs) else f"{len(runs)} runs"


def _table_row(published: pd.Series, runs: pd.DataFrame) -> dict:
    row = {"row": published["row"], "dataset": published["dataset"],
           "published": _accuracy(published["acc"], published["loss"])}
    if runs.empty:
        return {**row, **{column: NOT_RUN for column in COLUMNS[3:8]}, "run": ""}
    mean = runs[["test_acc_best", "test_loss_best", "test_acc_final", "wall_seconds"]].apply(
        pd.to_numeric, errors="coerce").mean()  # several seeds: report their mean
    # Show our loss only where the report printed one, so the two cells compare like with like.
    loss = mean["test_loss_best"] if not math.isnan(_number(published["loss"])) else None
    # Rounded first so float noise never prints as "-0.0000".
    difference = round(mean["test_acc_best"] - float(published["acc"]), 4) + 0.0
    return {**row,
            "ours (best val)": _accuracy(mean["test_acc_best"], loss),
            "ours (final)": _accuracy(mean["test_acc_final"]),
            "difference": "n/a" if math.isnan(difference) else f"{difference:+.4f}",
            "epochs": _epochs(runs["epochs"]),
            "wall time": _duration(mean["wall_seconds"]),
            "run": _run_label(runs)}


def _is_shortened(results: pd.DataFrame) -> pd.Series:
    """Which runs were shortened with --epochs."""
    return shortened_flags(results["shortened"]).astype(bool)


def shortened_runs(results: pd.DataFrame) -> pd.DataFrame:
    """The runs shortened with --epochs, one line each: they are listed apart, never compared with the report."""
    runs = results[_is_shortened(results)]
    dataset = runs["dataset"]
    return pd.DataFrame([{"run": run["run_id"], "experiment": run["experiment"], "dataset": dataset[index],
                          "epochs": _epochs(pd.Series([run["epochs"]])),
                          "test acc (best val)": _accuracy(run["test_acc_best"]),
                          "test acc (final)": _accuracy(run["test_acc_final"])}
                         for index, run in runs.iterrows()], columns=SHORTENED_COLUMNS)


def report_tables(results: pd.DataFrame) -> dict:
    """For each report table, in order: its published rows beside our matching full-length runs."""
    published = published_table()
    results = results[~_is_shortened(results)]  # a run shortened with --epochs is not the report's recipe
    dataset = results["dataset"]
    tables = {}
    for name in TABLES:
        rows = []
        for _, entry in published[published["table"] == name].iterrows():
            runs = results[(results["experiment"] == entry["experiment"]) & (dataset == entry["dataset"])]
            rows.append(_table_row(entry, runs))
        tables[name] = pd.DataFrame(rows, columns=COLUMNS)
    return tables


def _markdown_table(frame: pd.DataFrame) -> str:
    """A GitHub markdown table; `|` inside a cell is escaped so columns stay aligned."""
    def cell(value) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(column) for column in frame.columns) + " |",
             "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(cell(value) for value in values) + " |"
              for values in frame.itertuples(index=False)]
    return "\n".join(lines)


def summary_markdown(tables: dict) -> str:
    """Every table under its own heading, as one markdown document body."""
    return "\n\n".join(f"## {name}\n\n{_markdown_table(frame)}" for name, frame in tables.items())


def write_summary(profile: str) -> Path:
    """Collect the profile's runs and write results/summary.md beside its CSVs."""
    results = collect_results(profile)
    tables = report_tables(results)
    header = (f"# Our runs beside the report's published numbers (profile: {profile})\n\n"
              "Test accuracy at the best-validation epoch and at the final epoch; difference = "
              "ours (best val) - published. Runs without a validation split (Level E, as the report ran them) "
              "are scored at their final epoch in both columns. Numbers of the smoke profile come from a few hundred "
              "generated images trained for an epoch or two: they test the code path and mean "
              "nothing.\n\n")
    path = results_dir(profile) / "summary.md"
    body = summary_markdown(tables)
    shortened = shortened_runs(results)
    if not shortened.empty:
        body += (f"\n\n## {SHORTENED_HEADING}\n\nTrained for another number of epochs than the report's recipes "
                 "(`python -m common.reproduce --epochs N`), for a quick look: they are left out of the tables "
                 f"above.\n\n{_markdown_table(shortened)}")
    with atomic_path(path) as tmp:
        tmp.write_text(header + body + "\n")
    return path


def _published_for(row: dict) -> float:
    """The report's accuracy for a run's experiment and data set (NaN where it published none)."""
    published = published_table()
    dataset = row["dataset"]
    match = published[(published["experiment"] == row["experiment"]) & (published["dataset"] == dataset)]
    return float(match["acc"].iloc[0]) if not match.empty else math.nan


def compare_runs(rows: list) -> pd.DataFrame:
    """Several runs, one line each, beside the report's numbers."""
    frame = pd.DataFrame([{"experiment": row["experiment"], "report": _published_for(row),
                           "ours (best val)": row["test_acc_best"], "ours (final)": row["test_acc_final"],
                           "best epoch": row["best_epoch"], "epochs": row["epochs"]} for row in rows])
    frame.insert(4, "difference", (frame["ours (best val)"] - frame["report"]).round(4))
    return frame.set_index("experiment")


def compare_with_report(row: dict) -> pd.DataFrame:
    """One run beside the report's published number for the same experiment and data set."""
    report = _published_for(row)
    frame = pd.DataFrame([
        {"": "report (published)", "test accuracy": report, "epoch": "final"},
        {"": "ours, best-validation epoch", "test accuracy": row["test_acc_best"], "epoch": row["best_epoch"]},
        {"": "ours, final epoch", "test accuracy": row["test_acc_final"], "epoch": row["epochs"]},
    ]).set_index("")
    frame["difference to report"] = (frame["test accuracy"] - report).round(4)
    frame.iloc[0, -1] = math.nan  # the report against itself says nothing
    return frame


def ordering_check(rows: list, noise: float = 0.005) -> pd.DataFrame:
    """For every pair of runs, the report's accuracy difference beside ours and whether it survives.

    A pair survives when our difference has the report's sign and is larger than `noise` (a
    single seed's run-to-run spread is a few tenths of a percent on CIFAR-10).
    """
    lines = []
    for i, a in enumerate(rows):
        for b in rows[i + 1:]:
            report = _published_for(a) - _published_for(b)
            ours = a["test_acc_best"] - b["test_acc_best"]
            if math.isnan(report):
                verdict = "not in the report"
            elif abs(ours) < noise:
                verdict = "within noise"
            else:
                verdict = "survives" if (ours > 0) == (report > 0) else "reversed"
            lines.append({"pair": f"{a['experiment']} - {b['experiment']}", "report": round(report, 4),
                          "ours": round(ours, 4), "verdict": verdict})
    return pd.DataFrame(lines).set_index("pair")


def architecture_table(rows: list) -> pd.DataFrame:
    """Parameters, training throughput and accuracy of several runs, one line each (from their results rows)."""
    frame = pd.DataFrame([{
        "model": row["model"], "dataset": row["dataset"],
        "parameters": f"{int(row['params']):,}",
        "train images/s": round(_number(row.get("train_images_per_s")), 1),
        "device": row["device"], "wall time": _duration(row["wall_seconds"]),
        "test acc (best val)": row["test_acc_best"], "test acc (final)": row["test_acc_final"],
    } for row in rows])
    return frame.set_index(["model", "dataset"]) if rows else frame


def run_histories(results: pd.DataFrame, profile: str) -> dict:
    """The per-epoch history of every recorded run that has one, by run id (notebook order)."""
    from common.results import read_history

    folder = results_dir(check_profile(profile)) / "history"
    histories = {}
    for run_id in results.sort_values("notebook", kind="stable")["run_id"]:
        path = folder / f"{run_id}.csv"
        if path.exists():
            histories[run_id] = read_history(path)
    return histories
