"""--epochs: a full run trained for other epochs than its recipe is marked shortened and kept apart."""

import pytest

from common import recipes, summary
from common.experiment import run_experiment
from common.paths import checkpoints_dir, results_dir
from common.results import read_results

FULL_RECIPES = {
    "level_e": lambda **kw: recipes.level_e("basic", **kw),
    "level_a": lambda **kw: recipes.level_a("resnet18", "cifar100", **kw),
    "supcon_pretrain": lambda **kw: recipes.supcon_pretrain(**kw),
    "noisy_labels": lambda **kw: recipes.noisy_labels("cifar10", rate=0.3, coteaching=True, **kw),
}


@pytest.mark.parametrize("name", FULL_RECIPES)
def test_shortened_full_run_is_another_run(name):
    recipe = FULL_RECIPES[name]
    full, short = recipe(), recipe(epochs=3)
    assert not full.shortened and short.shortened and short.epochs == 3
    assert short.run_id == full.run_id + "-3ep"  # never the full run's checkpoints or results row
    assert short.fingerprint() != full.fingerprint()
    assert short.fingerprint() != full.replace(epochs=3).fingerprint()  # the mark itself is part of the config


def test_exact_run_ids():
    assert recipes.level_e("basic", epochs=5).run_id == "e_basic-vgg_basic-cifar10-s0-full-5ep"
    assert recipes.level_a("resnet18", epochs=5).run_id == "a_resnet18-resnet18-cifar10-s42-full-5ep"
    assert recipes.level_a("resnet18").run_id == "a_resnet18-resnet18-cifar10-s42-full"


def test_the_recipes_own_epochs_are_not_shortened():
    full = recipes.level_e("basic")
    same = recipes.level_e("basic", epochs=full.epochs)
    assert not same.shortened and same.run_id == full.run_id and same.fingerprint() == full.fingerprint()
    # configs made before the field existed keep their hash: their checkpoints and results still load
    assert full.to_dict()["shortened"] is False and recipes.level_e("basic", epochs=3).to_dict()["shortened"] is True


@pytest.mark.parametrize("name", FULL_RECIPES)
def test_smoke_runs_of_other_epochs_are_other_runs(name):
    recipe = FULL_RECIPES[name]
    default, same, explicit = recipe(profile="smoke"), recipe(profile="smoke", epochs=recipes.SMOKE_EPOCHS), \
        recipe(profile="smoke", epochs=3)
    assert not default.shortened and same == default and explicit.shortened
    assert explicit.epochs == 3 and default.epochs == recipes.SMOKE_EPOCHS
    assert explicit.run_id == default.run_id + "-3ep" and not default.run_id.endswith("ep")


def test_a_shortened_smoke_run_never_blocks_the_default_one(cpu_root):
    tiny = dict(model="tiny_cnn", synthetic_sizes=(48, 32), batch_size=16, eval_batch_size=32)
    short = recipes.level_e("basic", profile="smoke", epochs=1).replace(**tiny)  # --profile smoke --epochs 1
    default = recipes.level_e("basic", profile="smoke").replace(**tiny)  # then --profile smoke
    run_experiment(short, "01_test", progress=False)
    row = run_experiment(default, "01_test", progress=False).row  # was a CheckpointMismatch: one run id for both
    assert row["epochs"] == recipes.SMOKE_EPOCHS
    assert sorted(read_results(results_dir("smoke") / "01_test.csv")["run_id"]) == [default.run_id, short.run_id]


def test_supcon_classifier_of_a_shortened_encoder_is_shortened_too():
    pretrain = recipes.supcon_pretrain(epochs=3)
    classifier = recipes.supcon_classifier(pretrain, epochs=3)  # notebook 05 passes EPOCHS to both stages
    assert classifier.shortened and classifier.run_id.endswith("-3ep")
    assert classifier.encoder.startswith(pretrain.run_id + "@")


def test_full_and_shortened_runs_are_recorded_apart(cpu_root, capsys):
    tiny = dict(synthetic_sizes=(48, 32), batch_size=16, eval_batch_size=32)
    full = recipes.level_e("basic", source="synthetic").replace(epochs=2, model="tiny_cnn", **tiny)  # the full run
    short = recipes.level_e("basic", source="synthetic", epochs=1).replace(model="tiny_cnn", **tiny)
    assert short.shortened and not full.shortened
    run_experiment(full, "01_test", progress=False, allow_cpu=True)
    run_experiment(short, "01_test", progress=False, allow_cpu=True)

    rows = read_results(results_dir("full") / "01_test.csv").set_index("run_id")
    assert rows.loc[full.run_id, "shortened"] == False and rows.loc[full.run_id, "epochs"] == 2  # noqa: E712
    assert rows.loc[short.run_id, "shortened"] == True and rows.loc[short.run_id, "epochs"] == 1  # noqa: E712
    assert (checkpoints_dir("full") / full.run_id).is_dir() and (checkpoints_dir("full") / short.run_id).is_dir()
    # the full run is still the recorded one: loaded, not overwritten by the shortened run
    again = run_experiment(full, "01_test", progress=False, allow_cpu=True)
    assert again.loaded and again.row["run_id"] == full.run_id and again.row["epochs"] == 2

    results = summary.collect_results("full")
    row = summary.report_tables(results)["Level E"].set_index("row").loc["VGG basic"]
    assert row["run"] == full.run_id and row["epochs"] == "2"
    assert summary.shortened_runs(results)["run"].tolist() == [short.run_id]
    text = summary.write_summary("full").read_text()
    last_table = max(text.index(f"## {name}\n") for name in summary.report_tables(results))
    assert text.index(f"## {summary.SHORTENED_HEADING}") > last_table  # listed after every report table
    assert text.count(short.run_id) == 1 and text.index(short.run_id) > last_table  # and nowhere in them
