"""TRAIN = False: a notebook shows what is recorded and says what each missing run needs, without data or training;
and the notebooks' code display."""

import pytest

from common import recipes
from common.data import DataUnavailable
from common.experiment import run_experiment, run_experiments
from common.notebook import show_source

from helpers import micro

JPEG_IDENTITY = "imagefolder:cifar10-jpeg-27d093021b"


def test_only_recorded_runs_are_shown_and_the_missing_ones_say_what_they_need(cpu_root, capsys):
    done, missing = micro(seed=0), micro(seed=1)
    run_experiment(done, "t", progress=False)
    capsys.readouterr()
    shown = run_experiments({"done": done, "missing": missing}, "t", train=False)
    assert list(shown) == ["done"] and shown["done"].loaded
    out = capsys.readouterr().out
    assert "missing: not run yet (TRAIN = True trains it" in out
    full = recipes.level_a("resnet18", "cifar100")
    assert run_experiments({"c100": full}, "t", train=False) == {}
    assert "c100: not run: needs CIFAR-100 and a GPU, or hours of a CPU" in capsys.readouterr().out
    assert not (cpu_root / "checkpoints" / missing.run_id).exists()  # nothing was trained for it


def test_an_image_folder_identity_names_recorded_runs_without_the_images(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no folder of that name here
    cfg = recipes.level_e("gap", source=JPEG_IDENTITY)
    assert cfg.source == JPEG_IDENTITY and cfg.source_path == ""
    assert cfg.run_id == "e_gap-vgg_basic-imagefolder-cifar10-jpeg-as-cifar10-s0-full"
    assert cfg.fingerprint() == "9aa021e7d7e9"  # the committed run's, as tests/test_recipes.py pins it
    with pytest.raises(DataUnavailable, match="No image folder"):  # a path that is not there is still refused
        recipes.level_e("gap", source="imagefolder:no/such/folder")


def test_show_source_prints_the_code_outside_a_notebook(monkeypatch, capsys):
    monkeypatch.setitem(__import__("sys").modules, "IPython.display", None)  # as in a plain script
    show_source(micro)
    assert "def micro(" in capsys.readouterr().out
