"""The summary joins fabricated results CSVs with the published numbers."""

import pandas as pd
import pytest

from common import summary
from common.paths import results_dir
from common.published import FINAL_EPOCH_TABLES, TABLES, published_table
from common.results import RESULT_FIELDS, ResultsReadError

JPEG = "imagefolder:cifar10-jpeg-27d093021b"  # the JPEG copy of CIFAR-10, by its images' digest


def run_row(experiment, dataset, seed, acc, loss=0.5, wall=1860.0, **extra):
    """A fabricated results row: test accuracy `acc` at the best-validation epoch, acc - 0.01 at the final one."""
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


def table_rows(tables, table, label, dataset):
    frame = tables[table]
    return frame[(frame["row"] == label) & (frame["dataset"] == dataset)]


def table_row(tables, table, label, dataset):
    match = table_rows(tables, table, label, dataset)
    assert len(match) == 1
    return match.iloc[0]


def test_run_appears_with_signed_difference(root):
    write_rows("full", "01_basic_vgg.csv", [run_row("e_basic", "cifar10", 0, 0.8292)])
    row = table_row(summary.report_tables(summary.collect_results("full")),
                    "Level E", "VGG basic", "cifar10")
    assert row["published"] == "0.8392"
    assert row["trained on"] == "CIFAR-10 (original files)"
    assert row["ours (best val)"] == "0.8292"
    assert row["ours (final)"] == "0.8192"
    assert row["difference"] == "-0.0200" and row["compared at"] == "final"  # ours (final) - published
    assert row["seeds"] == "1 seed"
    assert row["epochs"] == "30"
    assert row["wall time"] == "31 min"
    assert row["run"] == "e_basic-cifar10-s0"


def test_losses_shown_where_the_report_printed_one(root):
    write_rows("full", "01_basic_vgg.csv", [run_row("e_strided", "cifar10", 0, 0.8358, loss=0.5,
                                                    test_loss_final=0.55)])
    row = table_row(summary.report_tables(summary.collect_results("full")),
                    "Level E", "strided-conv downsampling", "cifar10")
    assert row["published"] == "0.8158"
    assert row["ours (final)"] == "0.8258" and row["ours (best val)"] == "0.8358"
    assert row["difference"] == "+0.0100"
    # our loss at the epoch compared (here the final one) beside the report's
    assert row[summary.LOSS_COLUMN] == "0.5455 / 0.5500"
    tables = summary.report_tables(summary.collect_results("full"))
    assert table_row(tables, "Level E", "VGG basic", "cifar10")[summary.LOSS_COLUMN] == ""  # the report printed none
    assert table_row(tables, "Table 3", "ViT", "cifar100")[summary.LOSS_COLUMN] == "0.8876 / not run"


def test_published_row_without_run_reads_not_run(root):
    write_rows("full", "01_basic_vgg.csv", [run_row("e_basic", "cifar10", 0, 0.83)])
    tables = summary.report_tables(summary.collect_results("full"))
    assert list(tables) == ["Level E", "Table 4", "Table 1", "Table 2", "Noise on CIFAR-10", "Table 3", "SupCon"]
    row = table_row(tables, "Level E", "global average pooling head", "cifar10")
    for column in ("ours (best val)", "ours (final)", "difference", "epochs", "wall time"):
        assert row[column] == "not run"
    assert row["trained on"] == "" and row["seeds"] == "" and row["run"] == ""
    # The same experiment on another data set is a different published row.
    assert table_row(tables, "Table 1", "Baseline ResNet18", "cifar100")["difference"] == "not run"


def test_several_seeds_show_their_mean_sample_standard_deviation_and_count(root):
    write_rows("full", "03_resnet.csv", [run_row("a_resnet18", "cifar10", 0, 0.9100),
                                          run_row("a_resnet18", "cifar10", 1, 0.9200),
                                          run_row("a_resnet18", "cifar10", 2, 0.9120)])
    row = table_row(summary.report_tables(summary.collect_results("full")),
                    "Table 1", "Baseline ResNet18", "cifar10")
    # mean 0.9140, sample standard deviation (n - 1) 0.0053; the final epoch is 0.01 lower in every run
    assert row["ours (best val)"] == "0.9140 ± 0.0053"
    assert row["ours (final)"] == "0.9040 ± 0.0053"
    assert row["seeds"] == "3 seeds"
    assert row["difference"] == "-0.0152"  # the mean final-epoch accuracy - published 0.9192
    assert row["run"] == "a_resnet18-cifar10-s0, a_resnet18-cifar10-s1, a_resnet18-cifar10-s2"


def test_wall_time_over_seeds_is_a_range_never_a_mean(root):
    # one run slowed by a shared machine (74 min against 12-13): a mean of 33 min would describe none of them
    write_rows("full", "01.csv", [run_row("e_basic", "cifar10", seed, 0.81, wall=wall)
                                  for seed, wall in enumerate((750.0, 770.0, 4440.0))])
    row = table_row(summary.report_tables(summary.collect_results("full")), "Level E", "VGG basic", "cifar10")
    assert row["wall time"] == "12 min to 1 h 14 min"


def test_runs_of_one_seed_that_differ_otherwise_are_counted_as_runs(root):
    write_rows("full", "03_resnet.csv", [run_row("a_resnet18", "cifar10", 0, 0.9100),
                                          run_row("a_resnet18", "cifar10", 0, 0.9200, run_id="again")])
    row = table_row(summary.report_tables(summary.collect_results("full")),
                    "Table 1", "Baseline ResNet18", "cifar10")
    assert row["seeds"] == "2 runs (1 seed)" and row["ours (best val)"] == "0.9150 ± 0.0071"


def test_runs_on_two_sources_are_two_lines_never_averaged(root):
    write_rows("full", "01_basic_vgg.csv", [run_row("e_basic", "cifar10", 0, 0.8300),
                                            run_row("e_basic", "cifar10", 1, 0.8400),
                                            run_row("e_basic", "cifar10", 0, 0.8100, source=JPEG,
                                                    run_id="e_basic-jpeg-s0")])
    lines = table_rows(summary.report_tables(summary.collect_results("full")), "Level E", "VGG basic", "cifar10")
    assert lines["trained on"].tolist() == ["CIFAR-10 (original files)", "CIFAR-10, JPEG copy"]
    assert lines["ours (best val)"].tolist() == ["0.8350 ± 0.0071", "0.8100"]
    assert lines["seeds"].tolist() == ["2 seeds", "1 seed"]
    assert lines["difference"].tolist() == ["-0.0142", "-0.0392"]
    assert (lines["published"] == "0.8392").all()


def test_final_epoch_tables_are_the_ones_the_report_tested_at_the_final_epoch():
    assert set(FINAL_EPOCH_TABLES) == {"Level E", "Table 4", "Table 1", "Table 3", "SupCon"}
    assert set(FINAL_EPOCH_TABLES) < set(TABLES)
    # an experiment compares at one epoch whichever table it appears in
    assert (published_table().groupby(["experiment", "dataset"])["compared_at"].nunique() == 1).all()


@pytest.mark.parametrize("table,label,experiment,dataset,compared,difference", [
    ("Table 1", "Baseline ResNet18", "a_resnet18", "cifar100", "final", -0.0289),  # final 0.6600 - 0.6889
    ("Table 3", "ViT", "a_vit", "cifar100", "final", -0.0476),  # final 0.5800 - 0.6276
    ("SupCon", "SupCon pretraining + MLP classifier", "a_supcon", "cifar100", "final", -0.0420),
    ("Table 2", "No noise", "noise_clean", "imagenette", "best val", -0.0100),  # the noise script reloaded its best
])
def test_difference_uses_our_number_at_the_epoch_the_report_tested(root, table, label, experiment, dataset,
                                                                     compared, difference):
    acc = {"a_resnet18": 0.67, "a_vit": 0.59, "a_supcon": 0.68, "noise_clean": 0.83}[experiment]  # best val
    write_rows("full", "nb.csv", [run_row(experiment, dataset, 42, acc)])
    row = table_row(summary.report_tables(summary.collect_results("full")), table, label, dataset)
    assert row["compared at"] == compared
    assert float(row["difference"]) == pytest.approx(difference, abs=1e-9)


def test_all_combined_compares_the_scripts_combination_and_shows_the_texts_apart(root):
    write_rows("full", "02_reg.csv", [run_row("e_combined_as_run", "cifar10", 0, 0.8045),
                                      run_row("e_combined", "cifar10", 0, 0.8500)])
    tables = summary.report_tables(summary.collect_results("full"))
    as_run = table_row(tables, "Level E", "all combined", "cifar10")
    assert as_run["published"] == "0.7945" and as_run["difference"] == "+0.0000"  # final 0.7945
    assert as_run["run"] == "e_combined_as_run-cifar10-s0" and "script" in as_run["note"]
    text = table_row(tables, "Level E", "all combined, as the text lists it", "cifar10")
    assert text["published"] == "not published" and text["difference"] == "n/a"
    assert text["ours (final)"] == "0.8400" and "no published number" in text["note"]


@pytest.mark.parametrize("label,variant,published", [("warm-up + cosine annealing", "warmup_cosine", "0.7997"),
                                                      ("step decay", "step_decay", "0.3079"),
                                                      ("cosine annealing with restarts", "cosine_restarts", "0.8162")])
def test_table_4_compares_the_as_run_schedules_and_shows_the_written_ones_apart(root, label, variant, published):
    write_rows("full", "02_reg.csv", [run_row(f"e_{variant}_as_run", "cifar10", 0, float(published) + 0.01),
                                      run_row(f"e_{variant}", "cifar10", 0, 0.85)])
    tables = summary.report_tables(summary.collect_results("full"))
    as_run = table_row(tables, "Table 4", label, "cifar10")
    assert as_run["published"] == published and as_run["difference"] == "+0.0000"
    assert as_run["run"] == f"e_{variant}_as_run-cifar10-s0" and "every batch" in as_run["note"]
    written = table_row(tables, "Table 4", f"{label}, stepped per epoch", "cifar10")
    assert written["published"] == "not published" and written["difference"] == "n/a"
    assert written["run"] == f"e_{variant}-cifar10-s0" and "per epoch" in written["note"]


def test_convnext_rows_note_the_texts_120_epochs_against_the_scripts_50(root):
    tables = summary.report_tables(summary.collect_results("full"))
    for dataset in ("cifar10", "cifar100"):
        note = table_row(tables, "Table 1", "ConvNeXt", dataset)["note"]
        assert "120 epochs" in note and "50" in note
    assert table_row(tables, "Table 1", "SE + ResNet18", "cifar10")["note"] == ""


@pytest.mark.parametrize("name", ["bench.csv", "bench-cpu-amx.csv"])
def test_bench_csv_is_ignored(root, name):
    write_rows("full", "01_basic_vgg.csv", [run_row("e_basic", "cifar10", 0, 0.80)])
    write_rows("full", name, [run_row("e_gap", "cifar10", 0, 0.99)])
    results = summary.collect_results("full")
    assert list(results["run_id"]) == ["e_basic-cifar10-s0"]
    row = table_row(summary.report_tables(results), "Level E", "global average pooling head",
                    "cifar10")
    assert row["ours (best val)"] == "not run"


@pytest.mark.parametrize("content", ["epoch,val_acc\n1,0.5\n", "run_id,notebook\n\"unclosed,1\n"])
def test_a_results_csv_the_summary_cannot_read_is_named_not_reported_as_not_run(root, content):
    write_rows("full", "01_basic_vgg.csv", [run_row("e_basic", "cifar10", 0, 0.80)])
    (results_dir("full") / "02_regularization.csv").write_text(content)
    with pytest.raises(ResultsReadError, match="02_regularization.csv .*nothing was changed"):
        summary.collect_results("full")


def test_a_results_csv_of_the_older_header_is_named_not_a_bare_key_error(root):
    old = [field for field in RESULT_FIELDS if field != "source"]  # the header before `source` existed
    path = results_dir("full") / "02_regularization.csv"
    path.parent.mkdir(parents=True)
    pd.DataFrame([run_row("e_gap", "cifar10", 0, 0.8)], columns=old).to_csv(path, index=False)
    with pytest.raises(ResultsReadError, match="02_regularization.csv does not hold this repository's results columns"):
        summary.write_summary("full")


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
    assert "| VGG basic | cifar10 | CIFAR-10 (original files) | 0.8392 | 0.1234 |" in text
    assert "not run" in text
    assert not (root / "results").exists()
    assert sorted(p.name for p in path.parent.iterdir()) == ["01_basic_vgg.csv", "summary.md"]


def test_full_summary_written_in_the_repository_results(root):
    write_rows("full", "01_basic_vgg.csv", [run_row("e_basic", "cifar10", 0, 0.8392)])
    path = summary.write_summary("full")
    assert path == root / "results" / "summary.md"
    text = path.read_text()
    assert "profile: full" in text
    assert "| VGG basic | cifar10 | CIFAR-10 (original files) | 0.8392 | 0.8392 | 0.8292 | -0.0100 | final |" in text
    assert not (root / "smoke").exists()


def test_written_summary_shows_sources_seeds_and_the_comparison_rule(root):
    write_rows("full", "01_basic_vgg.csv", [run_row("e_basic", "cifar10", 0, 0.8300),
                                            run_row("e_basic", "cifar10", 1, 0.8400),
                                            run_row("e_basic", "cifar10", 0, 0.8100, source=JPEG,
                                                    run_id="e_basic-jpeg-s0")])
    text = summary.write_summary("full").read_text()
    assert "| VGG basic | cifar10 | CIFAR-10 (original files) | 0.8392 | 0.8350 ± 0.0071 | 0.8250 ± 0.0071 |" in text
    jpeg_line = "| VGG basic | cifar10 | CIFAR-10, JPEG copy | 0.8392 | 0.8100 | 0.8000 | -0.0392 | final |  | 1 seed |"
    assert jpeg_line in text
    assert "sample standard deviation" in text
    for table in FINAL_EPOCH_TABLES:
        assert table in text.split("\n\n## ")[0]  # the header names every final-epoch table
    assert "120 epochs" in text  # the ConvNeXt note, even before it has run


def test_run_on_another_source_stands_for_its_report_dataset(root):
    # a smoke run on generated data fills the row of the data set its recipe reproduces, no other
    write_rows("smoke", "01_basic_vgg.csv", [run_row("e_basic", "cifar10", 0, 0.55, source="synthetic"),
                                             run_row("a_resnet18", "cifar100", 0, 0.2, source="synthetic")])
    tables = summary.report_tables(summary.collect_results("smoke"))
    row = table_row(tables, "Level E", "VGG basic", "cifar10")
    assert row["ours (best val)"] == "0.5500" and row["trained on"] == "generated images (smoke)"
    assert table_row(tables, "Table 1", "Baseline ResNet18", "cifar10")["ours (best val)"] == summary.NOT_RUN
    row = table_row(tables, "Table 1", "Baseline ResNet18", "cifar100")
    assert row["ours (final)"] == "0.1900" and row[summary.LOSS_COLUMN] == "0.6448 / 0.5000"


def test_compare_with_report_puts_one_run_beside_the_published_number():
    row = run_row("e_basic", "cifar10", 0, 0.81, source=JPEG)
    frame = summary.compare_with_report(row)
    assert frame["test accuracy"].tolist() == [0.8392, 0.81, pytest.approx(0.80)]
    assert frame["difference to report"].iloc[1] == pytest.approx(-0.0292)
    # the report trained on the original files; ours on the JPEG copy
    assert frame["trained on"].tolist() == ["CIFAR-10 (original files)"] + ["CIFAR-10, JPEG copy"] * 2
    assert frame["epoch"].iloc[0] == "final" and frame["as the report tested"].tolist() == ["", "", "yes"]


def test_compare_with_report_marks_the_best_validation_epoch_where_the_report_tested_it():
    frame = summary.compare_with_report(run_row("noise_clean", "imagenette", 42, 0.85))
    assert frame["epoch"].iloc[0] == "best val" and frame["as the report tested"].tolist() == ["", "yes", ""]
    assert frame["trained on"].iloc[0] == "ImageNette 160 px"


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
                                             "dataset": "cifar10", "trained on": "CIFAR-10 (original files)",
                                             "epochs": "3", "test acc (best val)": "0.6100",
                                             "test acc (final)": "0.6000"}]
    text = summary.write_summary("full").read_text()
    section = text.index("## " + summary.SHORTENED_HEADING)
    assert "| VGG basic | cifar10 | CIFAR-10 (original files) | 0.8392 | 0.8292 |" in text[:section]
    assert "e_basic-cifar10-s0-3ep" not in text[:section]
    assert ("| e_basic-cifar10-s0-3ep | e_basic | cifar10 | CIFAR-10 (original files) | 3 | 0.6100 | 0.6000 |"
            in text[section:])


def test_only_shortened_runs_leave_the_report_row_not_run(root):
    write_rows("full", "01_basic_vgg.csv", [run_row("e_basic", "cifar10", 0, 0.61, epochs=3, shortened=True)])
    results = summary.collect_results("full")
    row = table_row(summary.report_tables(results), "Level E", "VGG basic", "cifar10")
    assert row["ours (best val)"] == summary.NOT_RUN
    assert len(summary.shortened_runs(results)) == 1
    screen = summary.screen_summary("full")  # what `reproduce --epochs 3` prints: the quick run, apart
    listed = screen[screen.index(summary.SHORTENED_HEADING):]
    assert "e_basic" in listed and "3 epochs" in listed and "final 0.6000" in listed
    assert "e_basic" not in screen[:screen.index(summary.SHORTENED_HEADING)]


def test_a_row_says_how_many_of_its_runs_kept_no_test_predictions(root):
    import numpy as np

    from common.predictions import write_predictions
    rows = [run_row("e_basic", "cifar10", seed, 0.81, run_id=f"basic-s{seed}", profile="full") for seed in (0, 1)]
    write_rows("full", "01.csv", rows)
    labels = np.zeros(4, dtype=int)
    write_predictions(root / "results" / "predictions" / "basic-s1.npz", labels, (labels, labels + 0.9),
                      (labels, labels + 0.9), ["a", "b"])
    row = table_row(summary.report_tables(summary.collect_results("full")), "Level E", "VGG basic", "cifar10")
    assert row["note"] == "1 of 2 without test predictions"
