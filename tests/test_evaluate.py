"""python -m common.evaluate on a smoke run: the recorded accuracy again, the predictions file, images, refusals."""

import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from common import checkpoints, evaluate, predictions
from common.data import synthetic_images
from common.experiment import run_experiment

from helpers import micro


@pytest.fixture
def trained(cpu_root, monkeypatch):
    """A finished smoke run with a validation split, and its results row; it learns enough (best epoch 2: test
    accuracy 0.78, final 0.59) that the best weights, the final ones and mangled images all differ."""
    monkeypatch.setenv("REPRO_PROFILE", "smoke")
    cfg = micro(val_size=32, synthetic_sizes=(160, 64))
    return cfg, run_experiment(cfg, "nb", progress=False).row


def run(capsys, *argv) -> tuple:
    """(exit status, printed text) of python -m common.evaluate ARGV."""
    status = evaluate.main(list(argv))
    return status, capsys.readouterr().out


def test_prints_the_recorded_accuracy_and_rewrites_predictions_only_when_asked(trained, capsys, tmp_path):
    cfg, row = trained
    recorded = predictions.predictions_path(cfg)
    before = recorded.read_bytes()
    status, out = run(capsys, cfg.run_id)
    assert status == 0
    first = out.splitlines()[0]
    assert f"test accuracy {row['test_acc_best']:.4f}" in first
    assert f"{row['test_acc_final']:.4f} with the final" in first
    assert "recorded already (the same predictions): left as it is" in out
    assert recorded.read_bytes() == before  # never overwritten without --out

    status, out = run(capsys, cfg.run_id, "--out", str(tmp_path / "again.npz"))
    assert status == 0 and "predictions written to" in out
    again, stored = predictions.read_predictions(tmp_path / "again.npz"), predictions.read_predictions(recorded)
    for key in ("label", "best_class", "final_class", "best_prob", "final_prob"):
        np.testing.assert_array_equal(again[key], stored[key], err_msg=key)
    assert again["classes"] == stored["classes"]
    names, labels, best = stored["classes"], stored["label"], stored["best_class"]
    per_class = pd.Series(predictions.per_class_accuracy(labels, best, len(names)), index=names).round(4)
    counts = pd.DataFrame(predictions.confusion_matrix(labels, best, len(names)), index=names, columns=names)
    assert per_class.to_string() in out and counts.to_string() in out


def test_images_get_their_top_three_classes(trained, capsys, tmp_path):
    cfg, _ = trained
    folder = tmp_path / "mine"
    folder.mkdir()
    for index, size in enumerate([(32, 32), (50, 40), (20, 64)]):  # other sizes: resized and centre-cropped
        Image.fromarray(np.random.default_rng(index).integers(0, 255, (*size, 3), dtype=np.uint8)).save(
            folder / f"img{index}.png")
    (folder / "notes.txt").write_text("not an image")  # a folder's other files are skipped
    status, out = run(capsys, cfg.run_id, "--images", str(folder))
    lines = out.splitlines()
    assert status == 0 and len(lines) == 3, out
    for index, line in enumerate(lines):
        name, scores = line.split(": ")
        assert name.endswith(f"img{index}.png")
        probs = [float(part.split()[-1]) for part in scores.split(", ")]
        assert len(probs) == 3 and probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.001
        assert all(part.split()[0].startswith("class") for part in scores.split(", "))


def test_images_match_the_test_set_predictions(trained, capsys, tmp_path):
    """Test images written as PNGs get the classes and probabilities the run's test predictions recorded."""
    cfg, _ = trained
    split = evaluate.load_split(cfg)
    stored = predictions.read_predictions(predictions.predictions_path(cfg))
    paths = [tmp_path / f"test{index:02d}.png" for index in range(16)]
    for index, path in enumerate(paths):
        Image.fromarray(split.test_x[index].permute(1, 2, 0).numpy()).save(path)
    status, out = run(capsys, cfg.run_id, "--images", *map(str, paths))
    assert status == 0
    tops = [line.split(": ")[1].split(", ")[0].split() for line in out.splitlines()]
    assert [name for name, _ in tops] == [stored["classes"][k] for k in stored["best_class"][:16]]
    assert [float(p) for _, p in tops] == pytest.approx(stored["best_prob"][:16].astype(float), abs=2e-3)


def test_bad_input_gets_one_sentence(trained, capsys, tmp_path):
    cfg, _ = trained
    status, out = run(capsys, "no-such-run")
    assert status == 2 and out.startswith("No checkpoint of 'no-such-run'") and out.count("\n") == 1

    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    status, out = run(capsys, cfg.run_id, "--images", str(broken))
    assert status == 2 and out.startswith(f"Cannot decode {broken}") and out.count("\n") == 1
    status, out = run(capsys, cfg.run_id, "--images", str(tmp_path / "missing"))
    assert status == 2 and out.startswith("No file or folder") and out.count("\n") == 1

    foreign = tmp_path / "foreign"  # a copy of the run's folder whose config was changed after it was saved
    shutil.copytree(checkpoints.run_folder(cfg), foreign)
    state = torch.load(foreign / "last.pt", weights_only=False)
    state["config"]["lr"] *= 2
    torch.save(state, foreign / "last.pt")
    status, out = run(capsys, str(foreign))
    assert status == 2 and "is a foreign checkpoint" in out and out.count("\n") == 1

    state["config"]["lr"] /= 2
    state["epoch"] = 1
    torch.save(state, foreign / "last.pt")
    status, out = run(capsys, str(foreign))
    assert status == 2 and "has trained 1 of its 3 epochs" in out


def test_a_checkpoint_folder_elsewhere_is_evaluated(trained, capsys, tmp_path):
    cfg, row = trained
    copy = tmp_path / "elsewhere"
    shutil.copytree(checkpoints.run_folder(cfg), copy)
    status, out = run(capsys, str(copy), "--out", str(tmp_path / "p.npz"))
    assert status == 0 and f"test accuracy {row['test_acc_best']:.4f}" in out


def test_the_command_line_says_one_sentence(cpu_root):
    done = subprocess.run([sys.executable, "-m", "common.evaluate", "nothing-here", "--profile", "smoke"],
                          capture_output=True, text=True)
    assert done.returncode == 2 and done.stdout.startswith("No checkpoint of 'nothing-here'") and not done.stderr


def test_an_image_folder_run_needs_its_folder_only_for_the_test_set(cpu_root, capsys, monkeypatch):
    """A run on an image folder (as every committed run is) is found again from --data, which must hold its images."""
    monkeypatch.setenv("REPRO_PROFILE", "smoke")
    images = synthetic_images(10, 40, 20, seed=3)
    folder = cpu_root / "pngs"
    for split, xs, ys in (("train", images.train_x, images.train_y), ("test", images.test_x, images.test_y)):
        for index, (x, y) in enumerate(zip(xs, ys)):
            (folder / split / f"c{int(y)}").mkdir(parents=True, exist_ok=True)
            Image.fromarray(x.permute(1, 2, 0).numpy()).save(folder / split / f"c{int(y)}" / f"{index}.png")
    cfg = micro(source=f"imagefolder:{folder}")
    row = run_experiment(cfg, "nb", progress=False).row
    status, out = run(capsys, cfg.run_id)
    assert status == 2 and out.strip().endswith("give its path with --data PATH.") and out.count("\n") == 1
    status, out = run(capsys, cfg.run_id, "--data", str(folder), "--out", str(cpu_root / "p.npz"))
    assert status == 0 and f"test accuracy {row['test_acc_best']:.4f}" in out
    status, out = run(capsys, cfg.run_id, "--images", str(folder / "test" / "c0"))  # class names: the recorded ones
    assert status == 0 and len(out.splitlines()) == 2 and all(line.count(" c") == 3 for line in out.splitlines())
    other = cpu_root / "other"
    shutil.copytree(folder, other)
    (other / "test" / "c0" / "extra.png").write_bytes(next((folder / "test" / "c1").glob("*.png")).read_bytes())
    status, out = run(capsys, cfg.run_id, "--data", str(other))
    assert status == 2 and "are not those of" in out and out.count("\n") == 1
