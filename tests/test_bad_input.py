"""Bad input and failing disks: one sentence naming the problem and the fix, and nothing written is damaged."""

import json
import re
import shutil
import stat
from pathlib import Path

import pytest
import reproduce
import torch

from common import checkpoints, data, notebook, results

from helpers import fit_until, micro


def test_a_bad_profile_variable_is_named_and_ignored_when_the_flag_is_given(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("REPRO_PROFILE", "fast")
    monkeypatch.setenv("REPRO_ROOT", str(tmp_path))
    monkeypatch.setattr(reproduce, "NOTEBOOKS", tmp_path)  # no notebooks: nothing runs
    assert reproduce.main(["--profile", "smoke"]) == 2  # got past the variable: no notebook to run here
    assert "No notebook found" in capsys.readouterr().out
    assert reproduce.main([]) == 2
    out = capsys.readouterr().out
    assert "REPRO_PROFILE='fast' is not a profile" in out and "\n" not in out.strip()


def test_a_checkpoint_of_another_kind_in_place_of_last_is_refused_with_a_sentence(tmp_path):
    cfg = micro()
    path = tmp_path / "last.pt"
    torch.save({"model": {}, "epoch": 2}, path)  # a copy of best.pt
    with pytest.raises(checkpoints.CheckpointMismatch, match="not a checkpoint to resume from.*best.pt"):
        checkpoints.check_config(checkpoints.load(path), cfg, path)


def test_a_checkpoint_of_another_config_names_the_flag_that_trains_it_afresh(tmp_path):
    cfg = micro()
    state = {**dict.fromkeys(checkpoints.RESUMABLE), "config": cfg.to_dict(), "config_hash": cfg.fingerprint()}
    with pytest.raises(checkpoints.CheckpointMismatch, match=r"lr .*FORCE = True in a notebook, --force for python "
                                                             "tools/reproduce.py"):
        checkpoints.check_config(state, cfg.replace(lr=cfg.lr * 2), tmp_path / "last.pt")


def test_a_full_disk_is_said_in_one_sentence_and_leaves_no_temp_file(tmp_path, monkeypatch):
    def full(obj, target):
        open(target, "wb").write(b"half")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0")

    monkeypatch.setattr(torch, "save", full)
    monkeypatch.setattr(checkpoints.shutil, "disk_usage", lambda path: type("U", (), {"free": 3 * 2**20})())
    (tmp_path / "last.pt").write_bytes(b"the previous epoch")
    with pytest.raises(checkpoints.CheckpointWriteError) as err:
        checkpoints.save({"x": 1}, tmp_path / "last.pt")
    assert "the disk is full (3 MB free)" in str(err.value) and "\n" not in str(err.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]
    assert (tmp_path / "last.pt").read_bytes() == b"the previous epoch"


def test_temp_files_of_killed_writers_are_removed(tmp_path):
    (tmp_path / ".last.pt.12345.tmp").write_bytes(b"cut short")
    (tmp_path / "last.pt").write_bytes(b"kept")
    checkpoints.remove_stale_temp_files(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_records_are_readable_by_everyone_not_only_their_writer(tmp_path):
    path = tmp_path / "results" / "01.csv"
    results.upsert_result(path, {"run_id": "r", "config_hash": "h"})
    assert path.stat().st_mode & stat.S_IROTH


def test_a_corrupt_cifar_archive_is_called_corrupt_not_missing(tmp_path):
    folder = tmp_path / "cifar10"
    folder.mkdir()
    (folder / "cifar-10-python.tar.gz").write_bytes(b"not a tar archive")
    with pytest.raises(data.DataUnavailable, match="corrupt or cut short; delete it"):
        data.load_images("cifar10", data_dir=tmp_path)


def test_a_lost_best_checkpoint_is_refused_not_replaced_by_another_epoch(cpu_root, monkeypatch):
    from common import train
    from common.experiment import build_for, load_split, make_loaders

    cfg = micro(val_size=16, epochs=3, monitor_test=False)
    loaders = make_loaders(cfg, load_split(cfg), torch.device("cpu"))
    scripted = iter([(1.0, 0.9), (1.0, 0.5)])  # validation: epoch 1 is the best, epoch 2 is worse
    monkeypatch.setattr(train, "evaluate", lambda *args, **kwargs: next(scripted))
    folder = cpu_root / "checkpoints"
    fit_until(2, build_for(cfg), loaders, cfg, folder, progress=False)
    (folder / "best.pt").write_bytes(b"cut short")
    with pytest.warns(UserWarning, match="best.pt is unreadable"), \
            pytest.raises(checkpoints.CheckpointUnreadable, match=r"epoch 1\) are lost.*force=True"):
        train.fit(build_for(cfg), loaders, cfg, folder, progress=False)


def test_best_copied_over_last_in_a_run_with_validation_is_refused_with_a_sentence(cpu_root):
    from common import train
    from common.experiment import build_for, load_split, make_loaders

    cfg = micro(val_size=16, epochs=2, monitor_test=False)
    loaders = make_loaders(cfg, load_split(cfg), torch.device("cpu"))
    folder = cpu_root / "checkpoints"
    fit_until(1, build_for(cfg), loaders, cfg, folder, progress=False)
    shutil.copy(folder / "best.pt", folder / "last.pt")  # cp best.pt last.pt (was a raw KeyError: 'best')
    with pytest.raises(checkpoints.CheckpointMismatch, match="last.pt is not a checkpoint to resume from"):
        train.fit(build_for(cfg), loaders, cfg, folder, progress=False)


def image_tree(root, classes_by_split):
    """train/ and test/ folders with one tiny PNG in each class folder listed (an empty list: an empty folder)."""
    from PIL import Image

    for split, classes in classes_by_split.items():
        for name, count in classes.items():
            (root / split / name).mkdir(parents=True)
            for i in range(count):
                Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(root / split / name / f"{i}.png")
    return root


def test_image_folders_with_other_test_classes_are_refused_naming_them(tmp_path):
    root = image_tree(tmp_path / "imgs", {"train": {"cat": 2, "dog": 2}, "test": {"cat": 1, "bird": 1}})
    with pytest.raises(data.DataUnavailable, match="different classes.*cat, dog against bird, cat"):
        data.load_images(f"imagefolder:{root}", data_dir=tmp_path / "data", image_size=8)


def test_an_empty_class_folder_is_refused_naming_it(tmp_path):
    root = image_tree(tmp_path / "imgs", {"train": {"cat": 2, "dog": 0}, "test": {"cat": 1, "dog": 1}})
    with pytest.raises(data.DataUnavailable, match="without images.*train/dog"):
        data.load_images(f"imagefolder:{root}", data_dir=tmp_path / "data", image_size=8)


@pytest.mark.parametrize("content", ["run_id,notebook\n\"unclosed,1\n", "a,b,c\n1,2,3\n"])
def test_a_results_file_this_repository_did_not_write_is_named_and_left_alone(tmp_path, content):
    path = tmp_path / "01_basic_vgg.csv"
    path.write_text(content)
    with pytest.raises(results.ResultsReadError, match="01_basic_vgg.csv .*nothing was changed"):
        results.upsert_result(path, {"run_id": "r", "config_hash": "h"})
    assert path.read_text() == content


@pytest.mark.parametrize("epochs, seed, named", [(2.5, 0, "EPOCHS = 2.5"), (0, 0, "EPOCHS = 0"),
                                                  ("3", 0, "EPOCHS = '3'"), (None, "abc", "SEED = 'abc'"),
                                                  (None, -1, "SEED = -1"), (None, 1.0, "SEED = 1.0")])
def test_notebook_parameters_no_run_could_use_are_refused_in_one_sentence(epochs, seed, named):
    with pytest.raises(ValueError) as err:
        notebook.setup("smoke", epochs=epochs, seed=seed)
    assert str(err.value).startswith(named) and "\n" not in str(err.value)
    notebook.setup("smoke", epochs=3, seed=42)  # what the command passes goes through


def test_every_notebook_with_epochs_and_seed_passes_them_to_setup():
    for path in sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb")):
        source = "\n".join("".join(cell["source"]) for cell in json.loads(path.read_text())["cells"])
        declared = set(re.findall(r"^(EPOCHS|SEED) *=", source, re.MULTILINE))
        call = re.findall(r"setup\(PROFILE[^)]*\)", source)
        assert len(call) == 1, path.name
        assert all(f"{name.lower()}={name}" in call[0] for name in declared), (path.name, call[0])
