"""The benchmark command runs and writes its table (what it measures is read, never asserted on)."""

import csv
import math

from common import bench, paths


def read_rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_model_benchmark_writes_one_row_per_model_and_variant(tmp_path, capsys):
    out = tmp_path / "bench.csv"
    bench.main(["--quick", "--only", "models", "--models", "vgg_basic", "resnet18", "--out", str(out)])
    rows = read_rows(out)
    assert [(r["benchmark"], r["variant"]) for r in rows] == [
        ("train vgg_basic (batch 8)", "fp32, NCHW"), ("train vgg_basic (batch 8)", "fp32, channels_last"),
        ("train resnet18 (batch 8)", "fp32, NCHW"), ("train resnet18 (batch 8)", "fp32, channels_last")]
    assert all(float(r["images_per_s"]) > 0 for r in rows)
    assert rows[0]["ratio"] == "1.0" and rows[0]["machine"]  # each model's baseline is its own first variant
    assert all(r["warmup_s"] == "" and r["seconds_per_epoch"] == "" for r in rows)  # only --compile and epoch fill them
    assert "train resnet18" in capsys.readouterr().out


def test_epoch_row_goes_to_results_by_default(tmp_path, monkeypatch):
    monkeypatch.setenv(paths.ROOT_ENV, str(tmp_path))  # the repository's results/ stays untouched
    assert bench.default_out() == tmp_path / "results" / "bench.csv"
    bench.main(["--quick", "--only", "epoch"])
    [row] = read_rows(tmp_path / "results" / "bench.csv")
    assert row["benchmark"] == "resnet18 epoch (batch 16)"
    assert "extrapolated from 1 step" in row["variant"]
    seconds = float(row["seconds_per_epoch"])
    assert math.isfinite(seconds) and seconds > 0
    assert row["machine"] and row["ratio"] == "" and row["warmup_s"] == ""


def test_every_report_network_is_benchmarked_and_compile_is_opt_in():
    assert set(bench.MODELS) == {"vgg_basic", "resnet18", "se_resnet18", "convnext", "vit"}
    assert bench.parse_args([]).compile is False and bench.parse_args(["--compile"]).compile is True
