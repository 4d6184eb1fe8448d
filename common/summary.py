"""The report's tables with our runs beside the published numbers."""

import math
from pathlib import Path

import pandas as pd

from common.data import describe_source
from common.paths import check_profile, results_dir
from common.predictions import predictions_path
from common.published import FINAL_EPOCH_TABLES, TABLES, published_table
from common.results import RESULT_FIELDS, atomic_path, read_history, read_results, shortened_flags

NOT_RUN = "not run"
NOT_PUBLISHED = "not published"
BENCH_PREFIX = "bench"  # bench.csv, bench-<machine>.csv: benchmark timings, not training runs
LOSS_COLUMN = "test loss (published / ours)"  # only where the report printed a loss; ours at the epoch compared
COLUMNS = ["row", "dataset", "trained on", "published", "ours (best val)", "ours (final)", "difference",
           "compared at", LOSS_COLUMN, "seeds", "epochs", "wall time", "run", "note"]
RUN_COLUMNS = ["ours (best val)", "ours (final)", "difference", "epochs", "wall time"]  # `not run` without a run
SHORTENED_COLUMNS = ["run", "experiment", "dataset", "trained on", "epochs", "test acc (best val)",
                     "test acc (final)"]
SHORTENED_HEADING = "Shortened runs (--epochs; not compared with the report)"


def collect_results(profile: str) -> pd.DataFrame:
    """Every run recorded in the profile's results CSVs, one row per run; a CSV it cannot read is named and refused
    (skipping it would report its runs as not run)."""
    frames = []
    for path in sorted(results_dir(check_profile(profile)).glob("*.csv")):
        if path.name.startswith(BENCH_PREFIX):
            continue
        frame = read_results(path)
        if not frame.empty:
            frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=RESULT_FIELDS)


def _number(value) -> float:
    """A float, or NaN for anything missing or not numeric."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _format_accuracy(acc, spread=None) -> str:
    """`0.8158`, or `0.8158 ± 0.0031` with a spread over seeds; `n/a` for a missing number."""
    acc, spread = _number(acc), _number(spread)
    if math.isnan(acc):
        return "n/a"
    return f"{acc:.4f}" if math.isnan(spread) else f"{acc:.4f} ± {spread:.4f}"


def _format_losses(published, ours) -> str:
    """`0.5455 / 0.5500`, the report's test loss beside ours; empty where the report printed none."""
    published = _number(published)
    if math.isnan(published):
        return ""
    return f"{published:.4f} / {ours if isinstance(ours, str) else _format_accuracy(ours)}"


def duration(seconds) -> str:
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


def _seeds_label(runs: pd.DataFrame) -> str:
    """How many seeds the numbers cover: `1 seed`, `3 seeds`, or `2 runs (1 seed)` where seeds repeat."""
    seeds = runs["seed"].nunique()
    if seeds == len(runs):
        return "1 seed" if seeds == 1 else f"{seeds} seeds"
    return f"{len(runs)} runs ({seeds} seed{'' if seeds == 1 else 's'})"


def _table_lines(published: pd.Series, runs: pd.DataFrame) -> list:
    """A published row's lines: one per source its runs trained on (never averaged across sources), or `not run`."""
    head = {"row": published["row"], "dataset": published["dataset"],
            "published": (_format_accuracy(published["acc"])
                          if not math.isnan(_number(published["acc"])) else NOT_PUBLISHED),
            "compared at": published["compared_at"], "note": published["note"]}
    if runs.empty:
        return [{**head, "trained on": "", **{column: NOT_RUN for column in RUN_COLUMNS},
                 LOSS_COLUMN: _format_losses(published["loss"], NOT_RUN), "seeds": "", "run": ""}]
    lines = []
    for _, group in runs.groupby("source", sort=True, dropna=False):
        line = {**head, **_source_cells(published, group)}
        # the file's presence is enough: reading it would decompress every run's predictions for a count
        missing = sum(isinstance(row["profile"], str) and not predictions_path(row).exists()
                      for row in group.to_dict("records"))
        if missing:  # recorded before runs kept their test predictions: no calibration or paired test for them
            without = f"{missing} of {len(group)} without test predictions"
            line["note"] = f"{line['note']}; {without}" if line["note"] else without
        lines.append(line)
    return lines


def _source_cells(published: pd.Series, runs: pd.DataFrame) -> dict:
    """The cells of one source's runs: the mean over seeds ± their sample standard deviation (n - 1)."""
    numbers = runs[["test_acc_best", "test_loss_best", "test_acc_final", "test_loss_final", "wall_seconds"]].apply(
        pd.to_numeric, errors="coerce")
    mean, spread = numbers.mean(), numbers.std()  # std is NaN for one run: the cell shows the number alone
    epoch = "final" if published["compared_at"] == "final" else "best"
    # rounded first so float noise never prints as "-0.0000"
    difference = round(mean[f"test_acc_{epoch}"] - float(published["acc"]), 4) + 0.0
    wall = numbers["wall_seconds"]
    return {"trained on": describe_source(runs["source"].iloc[0]),
            "ours (best val)": _format_accuracy(mean["test_acc_best"], spread["test_acc_best"]),
            "ours (final)": _format_accuracy(mean["test_acc_final"], spread["test_acc_final"]),
            "difference": "n/a" if math.isnan(difference) else f"{difference:+.4f}",
            LOSS_COLUMN: _format_losses(published["loss"], mean[f"test_loss_{epoch}"]),
            "seeds": _seeds_label(runs),
            "epochs": _epochs(runs["epochs"]),
            # a range, not a mean: one run slowed by a shared machine would move a mean without a trace
            "wall time": (duration(wall.min()) if wall.nunique() < 2
                          else f"{duration(wall.min())} to {duration(wall.max())}"),
            "run": ", ".join(runs["run_id"].astype(str))}


def _is_shortened(results: pd.DataFrame) -> pd.Series:
    """Which runs were shortened with --epochs."""
    return shortened_flags(results["shortened"]).astype(bool)


def shortened_runs(results: pd.DataFrame) -> pd.DataFrame:
    """The runs shortened with --epochs, one line each: they are listed apart, never compared with the report."""
    return pd.DataFrame([{"run": run["run_id"], "experiment": run["experiment"], "dataset": run["dataset"],
                          "trained on": describe_source(run["source"]),
                          "epochs": _epochs(pd.Series([run["epochs"]])),
                          "test acc (best val)": _format_accuracy(run["test_acc_best"]),
                          "test acc (final)": _format_accuracy(run["test_acc_final"])}
                         for _, run in results[_is_shortened(results)].iterrows()], columns=SHORTENED_COLUMNS)


def report_tables(results: pd.DataFrame) -> dict:
    """For each report table, in order: its published rows beside our matching full-length runs, by source."""
    published = published_table()
    results = results[~_is_shortened(results)]  # a run shortened with --epochs is not the report's recipe
    tables = {}
    for name in TABLES:
        rows = []
        for _, entry in published[published["table"] == name].iterrows():
            runs = results[(results["experiment"] == entry["experiment"]) & (results["dataset"] == entry["dataset"])]
            rows += _table_lines(entry, runs)
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
    header = (f"# Our runs beside the report's published numbers (profile: {profile})\n\n"
              "Test accuracy at the best-validation epoch and at the final epoch. The difference is ours minus "
              "published at the epoch the report tested (the `compared at` column): the final epoch in "
              f"{', '.join(FINAL_EPOCH_TABLES)} (the report's scripts tested the final epoch's weights; Level E has "
              "no validation split, so its best epoch is its final one), the best-validation epoch elsewhere. "
              "`trained on` names the images a run trained on; runs on different sources are never averaged "
              "together, each source has its own line. Over several seeds a cell shows the mean ± the sample "
              "standard deviation (n - 1), and `seeds` how many. Numbers of the smoke profile come from a few "
              "hundred generated images trained for an epoch or two: they test the code path and mean "
              "nothing.\n\n")
    path = results_dir(profile) / "summary.md"
    body = summary_markdown(report_tables(results))
    shortened = shortened_runs(results)
    if not shortened.empty:
        body += (f"\n\n## {SHORTENED_HEADING}\n\nTrained for another number of epochs than the report's recipes "
                 "(`python tools/reproduce.py --epochs N`), for a quick look: they are left out of the tables "
                 f"above.\n\n{_markdown_table(shortened)}")
    with atomic_path(path) as tmp:
        tmp.write_text(header + body + "\n")
    return path


def _published_for(row: dict) -> tuple:
    """The report's accuracy for a run's data set and experiment, and the epoch it compares at; (NaN, "") if none."""
    published = published_table()
    match = published[(published["experiment"] == row["experiment"]) & (published["dataset"] == row["dataset"])]
    return (float(match["acc"].iloc[0]), match["compared_at"].iloc[0]) if not match.empty else (math.nan, "")


def compare_runs(rows: list) -> pd.DataFrame:
    """Several runs, one line each, beside the report's numbers; the difference at the epoch the report tested."""
    lines = []
    for row in rows:
        report, at = _published_for(row)
        compared = row["test_acc_final"] if at == "final" else row["test_acc_best"]  # at the epoch the report tested
        lines.append({"experiment": row["experiment"], "trained on": describe_source(row["source"]),
                      "report": report, "ours (best val)": row["test_acc_best"],
                      "ours (final)": row["test_acc_final"], "difference": round(compared - report, 4),
                      "compared at": at, "best epoch": row["best_epoch"], "epochs": row["epochs"]})
    return pd.DataFrame(lines).set_index("experiment")


def compare_with_report(row: dict) -> pd.DataFrame:
    """One run beside the report's published number for the same experiment and data set."""
    report, at = _published_for(row)
    ours = describe_source(row["source"])
    frame = pd.DataFrame([
        # the report trained on the data set's original files
        {"": "report (published)", "test accuracy": report, "epoch": at or "n/a",
         "trained on": describe_source(row["dataset"]), "as the report tested": ""},
        {"": "ours, best-validation epoch", "test accuracy": row["test_acc_best"], "epoch": row["best_epoch"],
         "trained on": ours, "as the report tested": "yes" if at == "best val" else ""},
        {"": "ours, final epoch", "test accuracy": row["test_acc_final"], "epoch": row["epochs"],
         "trained on": ours, "as the report tested": "yes" if at == "final" else ""},
    ]).set_index("")
    frame["difference to report"] = (frame["test accuracy"] - report).round(4)
    frame.iloc[0, -1] = math.nan  # the report against itself says nothing
    return frame


def architecture_table(rows: list) -> pd.DataFrame:
    """Parameters, training throughput and accuracy of several runs, one line each (from their results rows)."""
    frame = pd.DataFrame([{
        "model": row["model"], "dataset": row["dataset"], "trained on": describe_source(row["source"]),
        "parameters": f"{int(row['params']):,}",
        "train images/s": round(_number(row.get("train_images_per_s")), 1),
        "device": row["device"], "wall time": duration(row["wall_seconds"]),
        "test acc (best val)": row["test_acc_best"], "test acc (final)": row["test_acc_final"],
    } for row in rows])
    return frame.set_index(["model", "dataset"]) if rows else frame


def run_histories(results: pd.DataFrame, profile: str) -> dict:
    """The per-epoch history of every recorded run that has one, by run id (notebook order)."""
    folder = results_dir(check_profile(profile)) / "history"
    histories = {}
    for run_id in results.sort_values("notebook", kind="stable")["run_id"]:
        path = folder / f"{run_id}.csv"
        if path.exists():
            histories[run_id] = read_history(path)
    return histories


def screen_summary(profile: str) -> str:
    """The summary on one screen: per table, each row that has runs (published beside ours), then how many have none."""
    results = collect_results(profile)
    lines = [f"Ours beside the report (profile {profile}; test accuracy at the epoch the report tested):"]
    for name, frame in report_tables(results).items():
        ran = frame[frame["ours (final)"] != NOT_RUN]
        missing = len(frame) - len(ran)
        lines.append(f"  {name}" + (f"  ({missing} of {len(frame)} rows not run)" if missing else ""))
        for _, row in ran.iterrows():
            ours = row["ours (final)"] if row["compared at"] == "final" else row["ours (best val)"]
            published = "—" if row["published"] == NOT_PUBLISHED else row["published"]
            lines.append(f"    {row['row'][:44]:<44} {row['dataset']:<10} published {published:<7} "
                         f"ours {ours:<16} {row['trained on']}")
    shortened = shortened_runs(results)
    if len(shortened):  # what a quick --epochs run trained, which the tables above never show
        lines.append(f"  {SHORTENED_HEADING}")
        lines += [f"    {run['experiment'][:44]:<44} {run['dataset']:<10} {run['epochs']:>3} epochs   "
                  f"final {run['test acc (final)']:<7} {run['trained on']}" for _, run in shortened.iterrows()]
    return "\n".join(lines)
