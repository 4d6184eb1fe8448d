"""python -m common.reproduce: notebooks in order, a failing one reported while the others still run."""

import nbformat
import pytest

from common import reproduce


def write_notebook(path, source):
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    notebook.cells = [nbformat.v4.new_code_cell("PROFILE = 'full'", metadata={"tags": ["parameters"]}),
                      nbformat.v4.new_code_cell(source)]
    nbformat.write(notebook, path)


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_ROOT", str(tmp_path))
    (tmp_path / "notebooks").mkdir()
    return tmp_path


def test_a_failing_notebook_is_reported_and_the_next_still_runs(root, capsys):
    marker = root / "ran.txt"
    write_notebook(root / "notebooks" / "01_broken.ipynb", "raise ValueError('no such data set')")
    write_notebook(root / "notebooks" / "02_fine.ipynb", f"open({str(marker)!r}, 'w').write(PROFILE)")
    code = reproduce.main(["--profile", "smoke"])
    out = capsys.readouterr().out
    assert code == 1
    assert "01_broken.ipynb" in out and "FAILED" in out and "no such data set" in out
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
