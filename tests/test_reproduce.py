"""python tools/reproduce.py: notebooks in order, a failing one reported while the others still run."""

import os
from pathlib import Path

import pytest
import reproduce

nbformat = pytest.importorskip("nbformat", reason="the notebook tools (pip install -e .[notebooks]) are not installed")


TRAINING_PARAMETERS = ("PROFILE = 'full'\nCOMPILE = False\nSYNC_BN = False\nPARALLEL = 'off'\nGPUS = 0\n"
                       "ALLOW_CPU = False\nEPOCHS = None")


def write_notebook(path, source, parameters_cell=TRAINING_PARAMETERS):
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    notebook.cells = [nbformat.v4.new_code_cell(parameters_cell, metadata={"tags": ["parameters"]}),
                      nbformat.v4.new_code_cell(source)]
    nbformat.write(notebook, path)


@pytest.fixture
def root(tmp_path, monkeypatch):
    """Outputs under tmp_path; the notebooks read from tmp_path/notebooks (the repository's, in real use)."""
    monkeypatch.setenv("REPRO_ROOT", str(tmp_path))
    monkeypatch.delenv("REPRO_ALLOW_CPU", raising=False)
    (tmp_path / "notebooks").mkdir()
    monkeypatch.setattr(reproduce, "NOTEBOOKS", tmp_path / "notebooks")
    return tmp_path


def parameters(**changes):
    """The papermill parameters every notebook gets, with `changes`."""
    return {"PROFILE": "smoke", "COMPILE": False, "SYNC_BN": False, "PARALLEL": "off", "GPUS": 0, "ALLOW_CPU": False,
            **changes}


def test_notebooks_come_from_the_repository_wherever_outputs_go(tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_ROOT", str(tmp_path / "elsewhere"))  # e.g. Google Drive, or a scratch disk
    assert [p.stem[:2] for p in reproduce.notebooks(["01", "08"])] == ["01", "08"]


def test_a_failing_notebook_is_reported_and_the_next_still_runs(root, capsys):
    marker = root / "ran.txt"
    write_notebook(root / "notebooks" / "01_broken.ipynb", "raise ValueError('no such data set')")
    write_notebook(root / "notebooks" / "02_fine.ipynb", f"open({str(marker)!r}, 'w').write(PROFILE)")
    code = reproduce.main(["--profile", "smoke"])
    out = capsys.readouterr().out
    assert code == 1
    failure = [line for line in out.splitlines() if "01_broken" in line and "FAILED" in line]
    # one line: the cell as the executed copy numbers it (papermill injects a parameters cell) and its error
    assert len(failure) == 1 and "ValueError: no such data set" in failure[0], out
    assert "cell 3" in failure[0] and str(root / "runs" / "smoke" / "01_broken.ipynb") in failure[0]
    assert "02_fine" in out and "ok" in out.split("02_fine")[1].splitlines()[0]
    assert marker.read_text() == "smoke"  # ran, with the profile passed as a papermill parameter
    assert (root / "runs" / "smoke" / "02_fine.ipynb").exists()  # executed copies stay out of notebooks/


def test_only_selects_notebooks_by_number(root):
    for name in ("01_a", "02_b", "08_summary"):
        write_notebook(root / "notebooks" / f"{name}.ipynb", "pass")
    assert [p.stem for p in reproduce.notebooks(["01", "08"])] == ["01_a", "08_summary"]
    assert [p.stem for p in reproduce.notebooks()] == ["01_a", "02_b", "08_summary"]


def test_full_profile_without_gpu_stops_before_running_anything(root, monkeypatch, capsys):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    monkeypatch.delenv("REPRO_ALLOW_CPU", raising=False)
    write_notebook(root / "notebooks" / "01_a.ipynb", "pass")
    assert reproduce.main(["--profile", "full"]) == 2
    assert "needs a GPU" in capsys.readouterr().out
    assert not (root / "runs").exists()


def record_papermill(monkeypatch):
    """Replace papermill's execution by a record of each call's notebook and parameters."""
    calls = []
    monkeypatch.setattr("papermill.execute_notebook",
                        lambda source, output, parameters, **kw: calls.append((source, output, parameters)))
    return calls


def test_epochs_is_passed_to_every_selected_notebook(root, monkeypatch, capsys):
    for name in ("01_a", "02_b", "08_summary"):
        write_notebook(root / "notebooks" / f"{name}.ipynb", "pass")
    calls = record_papermill(monkeypatch)
    assert reproduce.main(["--profile", "smoke", "--epochs", "3", "--only", "01", "08"]) == 0
    assert [Path(source).name for source, _, _ in calls] == ["01_a.ipynb", "08_summary.ipynb"]
    assert all(given == parameters(EPOCHS=3) for _, _, given in calls)
    # executed copies of a shortened run never overwrite those of a full-length one
    assert all(Path(output).parent == root / "runs" / "smoke-3ep" for _, output, _ in calls)


def test_without_epochs_no_epochs_parameter_is_passed(root, monkeypatch):
    write_notebook(root / "notebooks" / "01_a.ipynb", "pass")
    calls = record_papermill(monkeypatch)
    assert reproduce.main(["--profile", "smoke"]) == 0
    assert calls[0][2] == parameters() and Path(calls[0][1]).parent == root / "runs" / "smoke"


def test_full_profile_epochs_says_the_runs_are_shortened_and_kept_apart(root, monkeypatch, capsys):
    monkeypatch.setenv("REPRO_ALLOW_CPU", "1")
    write_notebook(root / "notebooks" / "01_a.ipynb", "pass")
    calls = record_papermill(monkeypatch)
    assert reproduce.main(["--profile", "full", "--epochs", "5"]) == 0
    assert calls[0][2] == parameters(PROFILE="full", EPOCHS=5, ALLOW_CPU=True)
    out = capsys.readouterr().out
    assert "shortened" in out and "-5ep" in out and "recorded apart" in out


@pytest.mark.parametrize("value", ["0", "-2", "three", "1.5"])
def test_epochs_must_be_a_positive_whole_number(root, monkeypatch, capsys, value):
    write_notebook(root / "notebooks" / "01_a.ipynb", "pass")
    calls = record_papermill(monkeypatch)
    with pytest.raises(SystemExit) as stop:
        reproduce.main(["--profile", "smoke", "--epochs", value])
    assert stop.value.code == 2 and not calls
    err = capsys.readouterr().err
    assert "--epochs" in err and "whole number of at least 1" in err
    assert not (root / "runs").exists()


def test_reproduce_leaves_the_callers_profile_as_it_was(root, monkeypatch):
    monkeypatch.setenv("REPRO_PROFILE", "smoke")
    monkeypatch.setattr(reproduce, "run_notebook", lambda *args, **kwargs: None)
    monkeypatch.setenv("REPRO_ALLOW_CPU", "1")
    write_notebook(root / "notebooks" / "01_a.ipynb", "pass")
    reproduce.main(["--profile", "full", "--only", "01"])
    assert os.environ["REPRO_PROFILE"] == "smoke"


def test_execution_switches_reach_the_notebooks_as_parameters(root, monkeypatch):
    write_notebook(root / "notebooks" / "01_a.ipynb", "pass")
    calls = record_papermill(monkeypatch)
    assert reproduce.main(["--profile", "smoke", "--parallel", "ddp", "--gpus", "2", "--sync-bn", "--compile"]) == 0
    assert calls[0][2] == parameters(PARALLEL="ddp", GPUS=2, SYNC_BN=True, COMPILE=True)
    assert not [key for key in os.environ if key in ("REPRO_PARALLEL", "REPRO_GPUS", "REPRO_COMPILE", "REPRO_SYNC_BN")]


def test_parallel_on_fewer_than_two_gpus_says_it_trains_in_one_process(root, monkeypatch, capsys):
    monkeypatch.setattr(reproduce, "run_notebook", lambda *args, **kwargs: None)
    write_notebook(root / "notebooks" / "01_a.ipynb", "pass")
    assert reproduce.main(["--profile", "smoke", "--parallel", "spread", "--gpus", "1"]) == 0
    assert "needs at least 2 GPUs and 1 is visible" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        reproduce.main(["--profile", "smoke", "--parallel", "spread", "--gpus", "two"])
    assert "not a number of GPUs" in capsys.readouterr().err


def test_the_job_ends_with_the_summary_on_screen_and_says_smoke_numbers_mean_nothing(root, capsys):
    results = root / "smoke" / "results"
    write_notebook(root / "notebooks" / "08_summary.ipynb",
                   f"import pathlib; pathlib.Path({str(results)!r}).mkdir(parents=True); "
                   f"pathlib.Path({str(results / 'summary.md')!r}).write_text('# summary')")
    assert reproduce.main(["--profile", "smoke"]) == 0
    out = capsys.readouterr().out
    assert "1 of 1 notebooks ran in" in out
    assert "Level E" in out and "not run" in out  # the tables, from the (empty) smoke results
    assert "mean nothing" in out and str(results / "summary.md") in out and str(root / "runs" / "smoke") in out


def test_no_train_passes_train_false_and_needs_no_gpu(root, monkeypatch):
    marker = root / "train.txt"
    write_notebook(root / "notebooks" / "01_shows.ipynb", f"open({str(marker)!r}, 'w').write(str(TRAIN))",
                   TRAINING_PARAMETERS + "\nTRAIN = True")
    monkeypatch.setattr(reproduce.torch.cuda, "is_available", lambda: False)
    assert reproduce.main(["--profile", "full", "--no-train"]) == 0  # no REPRO_ALLOW_CPU asked for: nothing trains
    assert marker.read_text() == "False"
    assert reproduce.main(["--profile", "full"]) == 2  # training the full profile without a GPU is still refused


def test_a_notebook_gets_only_the_parameters_it_declares(root, caplog):
    write_notebook(root / "notebooks" / "08_summary.ipynb", "assert PROFILE == 'smoke'", "PROFILE = 'full'")
    assert reproduce.main(["--profile", "smoke", "--compile"]) == 0
    assert "unknown parameter" not in caplog.text


def test_every_notebook_that_trains_declares_every_switch_of_the_command():
    papermill = pytest.importorskip("papermill")
    switches = {"PROFILE", "COMPILE", "SYNC_BN", "PARALLEL", "GPUS", "ALLOW_CPU", "EPOCHS", "FORCE", "TRAIN"}
    for notebook in reproduce.notebooks():
        if "run_experiment" in notebook.read_text():
            assert switches <= set(papermill.inspect_notebook(str(notebook))), notebook.name


def test_a_relative_root_is_the_folder_the_command_was_typed_in_for_every_notebook(root, monkeypatch):
    marker = root / "root.txt"
    write_notebook(root / "notebooks" / "01_a.ipynb",
                   f"import os; open({str(marker)!r}, 'w').write(os.environ['REPRO_ROOT'])")
    monkeypatch.chdir(root)
    monkeypatch.setenv("REPRO_ROOT", "out")  # the kernel runs in notebooks/: there "out" would be notebooks/out
    assert reproduce.main(["--profile", "smoke"]) == 0
    assert marker.read_text() == str(root / "out")
    assert (root / "out" / "runs" / "smoke" / "01_a.ipynb").exists() and not (root / "notebooks" / "out").exists()


def test_only_refuses_a_name_no_notebook_has_and_lists_the_known_ones(root, monkeypatch, capsys):
    for name in ("01_a", "08_summary"):
        write_notebook(root / "notebooks" / f"{name}.ipynb", "pass")
    calls = record_papermill(monkeypatch)
    assert reproduce.main(["--profile", "smoke", "--only", "01", "99"]) == 2
    out = capsys.readouterr().out
    assert not calls and "No notebook 99" in out and "01_a, 08_summary" in out and "\n" not in out.strip()


@pytest.mark.parametrize("kind", ["a file", "read-only"])
def test_an_unusable_root_is_named_in_one_sentence(root, monkeypatch, capsys, kind):
    write_notebook(root / "notebooks" / "01_a.ipynb", "pass")
    calls = record_papermill(monkeypatch)
    unusable = root / "outputs"
    if kind == "a file":
        unusable.write_text("not a folder")
    else:
        if os.geteuid() == 0:
            pytest.skip("root writes into read-only folders")
        unusable.mkdir(mode=0o555)
    monkeypatch.setenv("REPRO_ROOT", str(unusable))
    assert reproduce.main(["--profile", "smoke"]) == 2
    out = capsys.readouterr().out
    assert not calls and f"Cannot write the outputs under {unusable}" in out and "REPRO_ROOT" in out
    assert "\n" not in out.strip()


def test_force_reaches_the_notebooks_as_their_force_parameter(root, monkeypatch):
    write_notebook(root / "notebooks" / "01_a.ipynb", "pass", TRAINING_PARAMETERS + "\nFORCE = False")
    calls = record_papermill(monkeypatch)
    assert reproduce.main(["--profile", "smoke", "--force"]) == 0
    assert calls[0][2] == parameters(FORCE=True)


def test_rehash_forgets_every_remembered_image_folder_identity(root, monkeypatch, capsys):
    write_notebook(root / "notebooks" / "01_a.ipynb", "pass")
    record_papermill(monkeypatch)
    monkeypatch.setenv("REPRO_DATA", str(root / "data"))
    memo = root / "data" / "cache" / "identity-0123456789ab.txt"
    memo.parent.mkdir(parents=True)
    memo.write_text("stats images-0123456789\n")
    assert reproduce.main(["--profile", "smoke", "--rehash"]) == 0
    assert not memo.exists() and "forgot 1 remembered" in capsys.readouterr().out
