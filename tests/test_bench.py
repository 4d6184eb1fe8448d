"""The benchmark command (tools/bench.py) runs and writes its table (what it measures is read, never asserted on)."""

import csv
import math

import bench
import pytest
import torch

from common import device, paths, recipes


def read_rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_model_benchmark_writes_one_row_per_model_and_variant(tmp_path, capsys):
    out = tmp_path / "bench.csv"
    bench.main(["--quick", "--only", "models", "--models", "vgg_basic", "resnet18", "--out", str(out)])
    rows = read_rows(out)
    amp_dtype, fast = bench.fast_path(torch.device("cpu"))  # fit's precision "auto": bf16 where the CPU has it
    variants = ["fp32, NCHW", "fp32, channels_last"] + ([fast] if amp_dtype else [])
    assert [(r["benchmark"], r["variant"]) for r in rows] == [
        (f"train {name} (batch 8)", variant) for name in ("vgg_basic", "resnet18") for variant in variants]
    assert all(float(r["images_per_s"]) > 0 for r in rows)
    assert rows[0]["ratio"] == "1.0" and rows[0]["machine"]  # each model's baseline is its own first variant
    # only --compile and the epoch benchmark fill them
    assert all(r["compile_s"] == "" and r["seconds_per_epoch"] == "" for r in rows)
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
    assert row["machine"] and row["ratio"] == "" and row["compile_s"] == ""


def test_every_report_network_is_benchmarked_and_compile_is_opt_in():
    assert set(bench.MODELS) == {"vgg_basic", "resnet18", "se_resnet18", "convnext", "vit"}
    assert bench.parse_args([]).compile is False and bench.parse_args(["--compile"]).compile is True


@pytest.mark.parametrize("native, expected", [(True, torch.bfloat16), (False, torch.float16)])
def test_the_fast_path_on_a_gpu_is_bf16_only_where_it_is_native(monkeypatch, native, expected):
    monkeypatch.setattr(device, "native_bf16", lambda device: native)  # compute capability >= 8.0
    amp_dtype, name = bench.fast_path(torch.device("cuda"))
    assert amp_dtype == expected and name.startswith("bf16" if native else "fp16")


def test_the_epochs_first_pass_sees_every_batch_shape_of_the_timed_epoch(monkeypatch):
    shapes = []

    def spy(model, loaders, *args, **kwargs):
        n, size = len(loaders.train.y), loaders.train.batch_size
        shapes.append({min(size, n - start) for start in range(0, n, size)})
        return fit(model, loaders, *args, **kwargs)

    fit = bench.fit
    monkeypatch.setattr(bench, "fit", spy)
    monkeypatch.setattr(bench, "EPOCH_IMAGES", 40)  # an epoch of 16 + 16 + 8
    x, y = bench.load_data("synthetic", 48)
    [row] = bench.bench_epoch(x, y, batch_size=16, steps=3, device=torch.device("cpu"))
    first_pass, timed = shapes
    assert timed == {16, 8} and first_pass == timed
    assert row["images"] == 40 and "one whole epoch" in row["variant"]


def test_several_benchmarks_can_be_asked_for_at_once():
    assert bench.parse_args(["--only", "training", "epoch"]).only == ["training", "epoch"]


def test_the_torchvision_baseline_is_built_from_the_recipes_steps():
    # the Level A chain as the report's scripts wrote it with torchvision, Cutout on the tensor after ToTensor
    steps = bench.pil_transform(recipes.LEVEL_A_AUGMENT, size=(32, 32)).transforms
    assert [type(t).__name__ for t in steps] == ["RandomCrop", "RandomHorizontalFlip", "RandomAffine", "ColorJitter",
                                                 "RandomRotation", "ToTensor", "TensorCutout", "Normalize"]
    crop, flip, affine, jitter, rotate, _, cutout, _ = steps
    assert (crop.size, crop.padding, flip.p, affine.translate) == ((32, 32), 4, 0.5, (0.1, 0.1))
    assert (jitter.brightness, jitter.hue, rotate.degrees, cutout.size) == ((0.6, 1.4), (-0.1, 0.1), [-15.0, 15.0], 8)
    image = bench.PilDataset(torch.randint(0, 256, (1, 3, 32, 32), dtype=torch.uint8), torch.zeros(1),
                             bench.pil_transform(recipes.CUTOUT_AUGMENT, size=(32, 32)))[0][0]
    assert image.shape == (3, 32, 32) and (image == -1).all(0).sum() >= 64  # an 8 x 8 hole, normalised to -1


def test_a_chain_without_a_torchvision_baseline_is_refused_in_a_sentence():
    with pytest.raises(ValueError, match="no torchvision baseline for the augmentation 'resized_crop'"):
        bench.pil_transform(recipes.SUPCON_VIEW2, size=(32, 32))


def test_an_unwritable_out_is_refused_before_anything_is_measured(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(bench, "run_benchmarks", lambda *args: pytest.fail("benchmarked before checking --out"))
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    for out, problem in ((blocker / "bench.csv", "cannot be written"), (tmp_path, "is a folder")):
        with pytest.raises(SystemExit) as exit_:
            bench.main(["--quick", "--out", str(out)])
        assert exit_.value.code == 2 and problem in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["AMX", "AVX512-BF16", ""])
def test_machine_names_the_cpus_bf16_instructions(monkeypatch, kind):
    # AMX and AVX512-BF16 CPUs train bf16 at different speeds: a row must say which one measured it
    monkeypatch.setattr(bench, "cpu_bf16_kind", lambda: kind)
    text = bench.machine(torch.device("cpu"))
    assert (f"({kind})" in text) == bool(kind) and "()" not in text
    assert f"{torch.get_num_threads()} torch threads" in text
