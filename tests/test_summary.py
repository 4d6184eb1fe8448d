"""The summary joins fabricated results CSVs with the published numbers."""

import pandas as pd
import pytest

from common import summary
from common.paths import results_dir
from common.results import RESULT_FIELDS


def run_row(experiment, dataset, seed, acc, loss=0.5, wall=1860.0, **extra):
    row = {field: None for field in RESULT_FIELDS}
    row.update(run_id=f"{experiment}-{dataset}-s{seed}", notebook="nb", experiment=experiment,
               model="m", dataset=dataset, source=dataset, seed=seed, epochs=30, best_epoch=29, shortened=False,
               val_acc_best=acc, test_acc_best=acc, test_loss_best=loss,
               test_acc_final=acc - 0.01, test_loss_final=loss, wall_seconds=wall)
    row.update(extra)
    return row


def write_rows(profile, name, rows):
    path = results_dir(profile) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=RESULT_FIELDS).to_csv(path, index=False)


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_ROOT", str(tmp_path))
    return tmp_path


def table_row(tables, table, label, dataset):
    frame = tables[table]
    match = frame[(frame["row"] == label) & (frame["dataset"] == dataset)]
    assert len(match) == 1
    return match.iloc[0]


def test_run_appears_with_signed_difference(root):
    write_rows("full", "01_basic_vgg.csv", [run_row("e_basic", "cifar10", 0, 0.8292)])
    row = table_row(summary.report_tables(summary.collect_results("full")),
                    "Level E", "VGG basic", "cifar10")
    assert row["published"] == "0.8392"
    assert row["ours (best val)"] == "0.8292"
    assert row["ours (final)"] == "0.8192"
    assert row["difference"] == "-0.0100"
    assert row["epochs"] == "30"
    assert row["wall time"] == "31 min"
    assert row["run"] == "e_basic-cifar10-s0"


def test_losses_shown_where_the_report_printed_one(root):
    write_rows("full", "01_basic_vgg.csv", [run_row("e_strided", "cifar10", 0, 0.8258, loss=0.5)])
    row = table_row(summary.report_tables(summary.collect_results("full")),
                    "Level E", "strided-conv downsampling", "cifar10")
    assert row["published"] == "0.8158 (loss 0.5455)"
    assert row["ours (best val)"] == "0.8258 (loss 0.5000)"
    assert row["difference"] == "+0.0100"


def test_published_row_without_run_reads_not_run(root):
    write_rows("full", "01_basic_vgg.csv", [run_row("e_basic", "cifar10", 0, 0.83)])
    tables = summary.report_tables(summary.collect_results("full"))
    assert list(tables) == ["Level E", "Table 4", "Table 1", "Table 2", "Noise on CIFAR-10", "Table 3", "SupCon"]
    row = table_row(tables, "Level E", "global average pooling head", "cifar10")
    for column in ("ours (best val)", "ours (final)", "difference", "epochs", "wall time"):
        assert row[column] == "not run"
    # The same experiment on another data set is a different published row.
    assert table_row(tables, "Table 1", "Baseline ResNet18", "cifar100")["difference"] == "not run"


def test_two_seeds_are_averaged(root):
    write_rows("full", "03_resnet.csv", [run_row("a_resnet18", "cifar10", 0, 0.9100),
                                          run_row("a_resnet18", "cifar10", 1, 0.9200)])
    row = table_row(summary.report_tables(summary.collect_results("full")),
                    "Table 1", "Baseline ResNet18", "cifar10")
    assert row["ours (best val)"] == "0.9150"
    assert row["difference"] == "-0.0042"
    assert row["run"] == "2 seeds"


def test_bench_and_foreign_csvs_are_ignored(root):
    write_rows("full", "01_basic_vgg.csv", [run_row("e_basic", "cifar10", 0, 0.80)])
    write_rows("full", "bench.csv", [run_row("e_gap", "cifar10", 0, 0.99)])
    pd.DataFrame({"epoch": [1], "val_acc": [0.5]}).to_csv(results_dir("full") / "hist.csv")
    results = summary.collect_results("full")
    assert list(results["run_id"]) == ["e_basic-cifar10-s0"]
    row = table_row(summary.report_tables(results), "Level E", "global average pooling head",
                    "cifar10")
    assert row["ours (best val)"] == "not run"


def test_no_results_gives_empty_frame_and_all_not_run(root):
    results = summary.collect_results("smoke")
    assert results.empty and list(results.columns) == RESULT_FIELDS
    tables = summary.report_tables(results)
    assert all((frame["ours (best val)"] == "not run").all() for frame in tables.values())


def test_summary_markdown_lists_every_table():
    tables = {"A": pd.DataFrame({"row": ["x|y"], "published": ["0.5000"]}),
              "B": pd.DataFrame({"row": ["z"], "published": ["0.6000"]})}
    text = summary.summary_markdown(tables)
    assert text.index("## A") < text.index("## B")
    assert "| row | published |\n|---|---|\n| x\\|y | 0.5000 |" in text


def test_smoke_summary_stays_in_the_smoke_folder(root):
    write_rows("smoke", "01_basic_vgg.csv", [run_row("e_basic", "cifar10", 0, 0.1234)])
    path = summary.write_summary("smoke")
    assert path == root / "smoke" / "results" / "summary.md"
    text = path.read_text()
    assert "profile: smoke" in text and "mean nothing" in text
    assert "| VGG basic | cifar10 | 0.8392 | 0.1234 |" in text
    assert "not run" in text
    assert not (root / "results").exists()
    assert sorted(p.name for p in path.parent.iterdir()) == ["01_basic_vgg.csv", "summary.md"]


def test_full_summary_written_in_the_repository_results(root):
    write_rows("full", "01_basic_vgg.csv", [run_row("e_basic", "cifar10", 0, 0.8392)])
    path = summary.write_summary("full")
    assert path == root / "results" / "summary.md"
    text = path.read_text()
    assert "profile: full" in text
    assert "| VGG basic | cifar10 | 0.8392 | 0.8392 | 0.8292 | +0.0000 |" in text
    assert not (root / "smoke").exists()


def test_run_on_another_source_stands_for_its_report_dataset(root):
    # a smoke run on generated data fills the row of the data set its recipe reproduces, no other
    write_rows("smoke", "01_basic_vgg.csv", [run_row("e_basic", "cifar10", 0, 0.55, source="synthetic"),
                                             run_row("a_resnet18", "cifar100", 0, 0.2, source="synthetic")])
    tables = summary.report_tables(summary.collect_results("smoke"))
    assert table_row(tables, "Level E", "VGG basic", "cifar10")["ours (best val)"] == "0.5500"
    assert table_row(tables, "Table 1", "Baseline ResNet18", "cifar10")["ours (best val)"] == summary.NOT_RUN
    assert table_row(tables, "Table 1", "Baseline ResNet18", "cifar100")["ours (best val)"] == "0.2000 (loss 0.5000)"


def test_compare_with_report_puts_one_run_beside_the_published_number():
    row = run_row("e_basic", "cifar10", 0, 0.81, source="imagefolder:cifar10-jpeg-27d093021b")
    frame = summary.compare_with_report(row)
    assert frame["test accuracy"].tolist() == [0.8392, 0.81, pytest.approx(0.80)]
    assert frame["difference to report"].iloc[1] == pytest.approx(-0.0292)


def test_shortened_run_is_listed_apart_from_the_report_table(root):
    write_rows("full", "01_basic_vgg.csv", [run_row("e_basic", "cifar10", 0, 0.8292, shortened=False),
                                            run_row("e_basic", "cifar10", 0, 0.6100, epochs=3, shortened=True,
                                                    run_id="e_basic-cifar10-s0-3ep")])
    results = summary.collect_results("full")
    row = table_row(summary.report_tables(results), "Level E", "VGG basic", "cifar10")
    assert row["ours (best val)"] == "0.8292" and row["epochs"] == "30"  # the full run alone, not a mean of both
    assert row["run"] == "e_basic-cifar10-s0"
    shortened = summary.shortened_runs(results)
    assert shortened.to_dict("records") == [{"run": "e_basic-cifar10-s0-3ep", "experiment": "e_basic",
                                             "dataset": "cifar10", "epochs": "3", "test acc (best val)": "0.6100",
                                             "test acc (final)": "0.6000"}]
    text = summary.write_summary("full").read_text()
    section = text.index("## " + summary.SHORTENED_HEADING)
    assert "| VGG basic | cifar10 | 0.8392 | 0.8292 |" in text[:section]
    assert "e_basic-cifar10-s0-3ep" not in text[:section]
    assert "| e_basic-cifar10-s0-3ep | e_basic | cifar10 | 3 | 0.6100 | 0.6000 |" in text[section:]


def test_only_shortened_runs_leave_the_report_row_not_run(root):
    write_rows("full", "01_basic_vgg.csv", [run_row("e_basic", "cifar10", 0, 0.61, epochs=3, shortened=True)])
    results = summary.collect_results("full")
    row = table_row(summary.report_tables(results), "Level E", "VGG basic", "cifar10")
    assert row["ours (best val)"] == summary.NOT_RUN
    assert len(summary.shortened_runs(results)) == 1
