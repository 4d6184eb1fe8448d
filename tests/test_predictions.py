"""Test predictions: stored with every run, and per-class accuracy, confusion and calibration computed from them
against small cases worked out by hand."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from common.experiment import run_experiment
from common.predictions import (
    at_epoch,
    confusion_matrix,
    expected_calibration_error,
    per_class_accuracy,
    predictions_path,
    read_predictions,
    reliability,
    write_predictions,
)
from common.results import ResultsReadError
from common.train import evaluate

from helpers import micro


def test_confusion_matrix_and_per_class_accuracy_by_hand():
    labels, predicted = [0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 0, 2]
    assert confusion_matrix(labels, predicted, 3).tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]
    accuracy = per_class_accuracy(labels, predicted, 4)  # class 3 has no test image
    assert accuracy[:3].tolist() == pytest.approx([0.5, 1.0, 2 / 3]) and math.isnan(accuracy[3])


def test_calibration_error_by_hand():
    # 4 bins (0, .25], (.25, .5], (.5, .75], (.75, 1]: one image in each, gaps 0.1, 0.5, 0.75 and 0
    confidence, correct = [0.1, 0.5, 0.75, 1.0], [False, True, False, True]
    table = reliability(confidence, correct, bins=4)
    assert table["count"].tolist() == [1, 1, 1, 1]
    assert table["accuracy"].tolist() == [0, 1, 0, 1]
    assert expected_calibration_error(confidence, correct, bins=4) == pytest.approx((0.1 + 0.5 + 0.75 + 0) / 4)
    # eight of ten right at confidence 0.8: calibrated; all ten right at 0.8: under-confident by 0.2
    assert expected_calibration_error([0.8] * 10, [True] * 8 + [False] * 2) == pytest.approx(0)
    assert expected_calibration_error([0.8] * 10, [True] * 10) == pytest.approx(0.2)
    # the default 15 bins keep apart two confidences that 4 bins join: 0.62 and 0.71 (gaps 0.62 and 0.29)
    assert expected_calibration_error([0.62, 0.71], [False, True]) == pytest.approx((0.62 + 0.29) / 2)
    assert expected_calibration_error([0.62, 0.71], [False, True], bins=4) == pytest.approx(0.665 - 0.5)


def test_evaluate_keeps_each_images_class_and_probability():
    model = nn.Linear(3, 3, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.eye(3))  # the images are their own logits
    images = torch.tensor([[2.0, 0, 0], [0, 0, 1.0], [0, 3.0, 0]])
    loss, acc, classes, probs = evaluate(model, [(images, torch.tensor([0, 1, 1]))], keep_predictions=True)
    assert classes.tolist() == [0, 2, 1] and acc == pytest.approx(2 / 3)
    e = math.e
    assert probs.tolist() == pytest.approx([e ** 2 / (e ** 2 + 2), e / (e + 2), e ** 3 / (e ** 3 + 2)], rel=1e-6)
    assert evaluate(model, [(images, torch.tensor([0, 1, 1]))]) == (loss, acc)  # the same numbers without them


def test_a_run_stores_predictions_that_give_its_test_accuracies(cpu_root):
    cfg = micro(val_size=8, epochs=3)
    row = run_experiment(cfg, "t", progress=False).row
    stored = read_predictions(predictions_path(cfg))
    assert len(stored["label"]) == 32 and stored["classes"] == [f"class{i}" for i in range(10)]
    for which in ("best", "final"):
        classes, probs, right = at_epoch(stored, which)
        assert right.mean() == pytest.approx(row[f"test_acc_{which}"])
        assert ((probs >= 0.1 - 1e-3) & (probs <= 1)).all()  # the top class of ten has at least a tenth
    assert np.load(predictions_path(cfg))["final_class"].shape == (32,)  # one call reads it
    assert predictions_path(cfg).stat().st_size < 100_000


def test_a_foreign_file_is_refused_in_a_sentence(tmp_path):
    text = tmp_path / "notes.npz"
    text.write_text("not predictions")
    with pytest.raises(ResultsReadError, match="is not a predictions file"):
        read_predictions(text)
    partial = tmp_path / "partial.npz"
    np.savez(partial, label=np.zeros(3))
    with pytest.raises(ResultsReadError, match="lacks best_class"):
        read_predictions(partial)


def test_ten_thousand_images_stay_small(tmp_path):
    rng = np.random.default_rng(0)
    labels, classes = rng.integers(0, 10, 10_000), rng.integers(0, 10, 10_000)
    probs = rng.uniform(0.1, 1, 10_000)
    path = tmp_path / "p.npz"
    write_predictions(path, labels, (classes, probs), (classes, probs), [f"c{i}" for i in range(10)])
    stored = read_predictions(path)
    assert path.stat().st_size < 100_000
    assert stored["best_prob"] == pytest.approx(probs, abs=1e-3) and (stored["label"] == labels).all()
