"""The benchmark command runs and writes its table (what it measures is read, never asserted on)."""

import csv

from common import bench


def test_model_benchmark_writes_one_row_per_model_and_variant(tmp_path, capsys):
    out = tmp_path / "bench.csv"
    bench.main(["--quick", "--only", "models", "--models", "vgg_basic", "resnet18", "--out", str(out)])
    with open(out) as f:
        rows = list(csv.DictReader(f))
    assert [(r["benchmark"], r["variant"]) for r in rows] == [
        ("train vgg_basic (batch 8)", "fp32, NCHW"), ("train vgg_basic (batch 8)", "fp32, channels_last"),
        ("train resnet18 (batch 8)", "fp32, NCHW"), ("train resnet18 (batch 8)", "fp32, channels_last")]
    assert all(float(r["images_per_s"]) > 0 for r in rows)
    assert rows[0]["ratio"] == "1.0" and rows[0]["machine"]  # each model's baseline is its own first variant
    assert "train resnet18" in capsys.readouterr().out
