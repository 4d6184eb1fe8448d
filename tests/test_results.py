"""The results CSV (upsert, concurrency, failed writes), the history CSV and the curves figure."""

import errno
import multiprocessing
import os
import socket
import subprocess
import sys
import tempfile
import textwrap

import pandas as pd
import pytest

from common import results, viz
from common.results import (
    HISTORY_FIELDS,
    RESULT_FIELDS,
    ResultsWriteError,
    find_result,
    read_history,
    read_results,
    upsert_result,
    write_history,
)


def row(run_id, acc=0.5, config_hash="abc123def456", **extra):
    values = {"run_id": run_id, "notebook": "nb", "experiment": "e", "model": "m", "dataset": "d",
              "profile": "smoke", "seed": 0, "epochs": 2, "best_epoch": 2, "test_acc_best": acc,
              "test_acc_final": acc, "config_hash": config_hash}
    values.update(extra)
    return values


def test_upsert_appends_and_replaces_the_same_run(tmp_path):
    path = tmp_path / "results" / "nb.csv"
    upsert_result(path, row("a", 0.1))
    upsert_result(path, row("b", 0.2))
    frame = read_results(path)
    assert list(frame.columns) == RESULT_FIELDS
    assert frame["run_id"].tolist() == ["a", "b"]
    upsert_result(path, row("a", 0.9))  # a rerun of "a" replaces its row
    frame = read_results(path)
    assert sorted(frame["run_id"]) == ["a", "b"] and len(frame) == 2
    assert frame.set_index("run_id").loc["a", "test_acc_best"] == 0.9
    assert frame.set_index("run_id").loc["b", "test_acc_best"] == 0.2
    assert frame.set_index("run_id").loc["a", "model"] == "m"
    assert frame.set_index("run_id")["test_loss_best"].isna().all()  # fields not given stay empty


def test_upsert_ignores_unknown_keys(tmp_path):
    path = tmp_path / "nb.csv"
    upsert_result(path, row("a", surprise="x"))
    assert list(read_results(path).columns) == RESULT_FIELDS


def test_read_missing_results_gives_the_known_columns(tmp_path):
    frame = read_results(tmp_path / "none.csv")
    assert frame.empty and list(frame.columns) == RESULT_FIELDS
    assert find_result(tmp_path / "none.csv", "a", "abc") is None


def test_find_result_matches_run_id_and_config_hash(tmp_path):
    path = tmp_path / "nb.csv"
    upsert_result(path, row("a", 0.7, config_hash="abc123def456"))
    upsert_result(path, row("b", 0.8, config_hash="fff000fff000"))
    found = find_result(path, "a", "abc123def456")
    assert found is not None and found["test_acc_best"] == 0.7
    assert find_result(path, "a", "fff000fff000") is None  # another config: not this run's result
    assert find_result(path, "c", "abc123def456") is None


@pytest.mark.parametrize("config_hash", ["123456789012", "12e456789012"])
def test_find_result_with_a_digits_only_config_hash(tmp_path, config_hash):
    """A config_hash that looks like a number (digits only, or 12e456...) still matches: text columns stay text."""
    path = tmp_path / "nb.csv"
    upsert_result(path, row("a", 0.7, config_hash=config_hash))
    found = find_result(path, "a", config_hash)
    assert found is not None and found["test_acc_best"] == 0.7


def _upsert_many(path, worker, count, start):
    start.wait()
    for i in range(count):
        upsert_result(path, row(f"w{worker}-r{i}", acc=worker + i / 10))


@pytest.mark.parametrize("drop", [1, 2, -1])  # the previous 25-field schema, a 24-field row; and one field too many
def test_a_row_of_another_schema_is_refused_naming_the_file_and_line_and_nothing_changes(tmp_path, drop):
    path = tmp_path / "01_basic_vgg.csv"
    upsert_result(path, row("a"))  # one row: pandas would read a longer one as an index, silently
    lines = path.read_text().splitlines(keepends=True)
    fields = lines[1].rstrip("\n").split(",")
    lines[1] = ",".join(fields[:-drop] if drop > 0 else fields + ["extra"]) + "\n"
    path.write_text("".join(lines))
    before = path.read_bytes()
    with pytest.raises(results.ResultsReadError, match=r"01_basic_vgg\.csv, line 2, has \d+ fields where the header "
                                                       rf"has {len(RESULT_FIELDS)}.*nothing was changed"):
        upsert_result(path, row("c"))
    assert path.read_bytes() == before
    with pytest.raises(results.ResultsReadError, match="line 2"):
        read_results(path)


@pytest.mark.parametrize("target", ["results/01_basic_vgg.csv", "figures/run.png"])
def test_temp_files_of_killed_writers_go_and_a_live_writers_stay(tmp_path, target):
    path = tmp_path / target
    killed = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from common.results import atomic_path
        with atomic_path({str(path)!r}) as tmp:
            tmp.write_text("half a file")
            print("writing", flush=True)
            time.sleep(600)
    """)], stdout=subprocess.PIPE, text=True)
    assert killed.stdout.readline() == "writing\n"
    killed.kill()
    killed.wait()
    (left,) = path.parent.glob(".*.tmp")  # what the killed writer left
    live = path.parent / f".{path.name}.~{socket.gethostname()}~{os.getpid()}~inflight.tmp"  # a writer still at work
    live.write_text("being written")
    if path.suffix == ".csv":
        upsert_result(path, row("a"))
    else:
        from matplotlib.figure import Figure

        results.save_figure(Figure(), path)
    assert not left.exists() and live.exists() and path.exists()


def test_concurrent_upserts_lose_no_row(tmp_path):
    path = tmp_path / "results" / "nb.csv"
    ctx = multiprocessing.get_context("fork")
    start = ctx.Event()
    workers = [ctx.Process(target=_upsert_many, args=(path, w, 5, start)) for w in range(4)]
    for p in workers:
        p.start()
    start.set()
    for p in workers:
        p.join(timeout=60)
    assert [p.exitcode for p in workers] == [0] * 4
    frame = read_results(path)
    assert sorted(frame["run_id"]) == sorted(f"w{w}-r{i}" for w in range(4) for i in range(5))
    assert list(frame.columns) == RESULT_FIELDS


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_failed_replace_raises_and_keeps_the_old_csv(tmp_path, monkeypatch):
    path = tmp_path / "nb.csv"
    upsert_result(path, row("a", 0.1))
    before = path.read_bytes()

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", disk_full)
    with pytest.raises(ResultsWriteError) as err:
        upsert_result(path, row("b", 0.2))
    message = str(err.value)
    assert str(path) in message and "No space left on device" in message
    assert "nothing already written was changed" in message
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert _leftovers(tmp_path) == []


def test_failed_csv_write_raises_and_keeps_the_old_csv(tmp_path, monkeypatch):
    path = tmp_path / "nb.csv"
    upsert_result(path, row("a", 0.1))
    before = path.read_bytes()
    original = pd.DataFrame.to_csv

    def half_written(self, target, *args, **kwargs):
        with open(target, "w") as handle:
            handle.write("run_id,no")  # part of the file, then the disk fills up
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_csv", half_written)
    with pytest.raises(ResultsWriteError, match="No space left"):
        upsert_result(path, row("b", 0.2))
    monkeypatch.setattr(pd.DataFrame, "to_csv", original)
    assert path.read_bytes() == before
    assert _leftovers(tmp_path) == []


def test_failed_temp_file_raises_results_write_error(tmp_path, monkeypatch):
    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    with pytest.raises(ResultsWriteError, match="Read-only file system"):
        write_history(tmp_path / "history" / "run.csv", [])


def test_unwritable_results_folder_raises_results_write_error(tmp_path):
    """A results folder that cannot be created (a file in the way) gives ResultsWriteError from every writer."""
    blocker = tmp_path / "results"
    blocker.write_text("a file where the results folder should be")
    with pytest.raises(ResultsWriteError):
        write_history(blocker / "history.csv", [])  # the history path already reports it well
    with pytest.raises(ResultsWriteError):
        upsert_result(blocker / "nb.csv", row("a"))


def test_history_round_trip(tmp_path):
    history = [{"epoch": e, "train_loss": 1.0 / e, "train_acc": 0.1 * e, "val_loss": float("nan"),
                "val_acc": float("nan"), "lr": 1e-3, "seconds": 2.5, "extra": "dropped"} for e in (1, 2, 3)]
    path = tmp_path / "history" / "run.csv"
    write_history(path, history)
    frame = read_history(path)
    assert list(frame.columns) == HISTORY_FIELDS
    assert frame["epoch"].tolist() == [1, 2, 3]
    assert frame["train_loss"].tolist() == pytest.approx([1.0, 0.5, 1 / 3], rel=1e-12)
    assert frame["val_acc"].isna().all()


def test_plot_history_draws_validation_only_when_present(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    base = {"epoch": [1, 2], "train_loss": [1.0, 0.5], "train_acc": [0.3, 0.6], "lr": [1e-3] * 2, "seconds": [1, 1]}
    without = viz.plot_history(pd.DataFrame({**base, "val_loss": [float("nan")] * 2, "val_acc": [float("nan")] * 2}))
    with_val = viz.plot_history(pd.DataFrame({**base, "val_loss": [1.1, 0.7], "val_acc": [0.2, 0.5]}), title="t")
    assert [len(ax.lines) for ax in without.axes] == [1, 1]
    assert [len(ax.lines) for ax in with_val.axes] == [2, 2]
    path = tmp_path / "figures" / "run.png"
    results.save_figure(with_val, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    plt.close(without)
    plt.close(with_val)


def test_history_grid_draws_every_seed_of_a_panel_alike_and_names_each_split_once_above_the_panels():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def history(shift, val):
        return pd.DataFrame({"epoch": [1, 2], "train_loss": [1.0 + shift, 0.5], "test_loss": [1.2, 0.9 + shift],
                             "val_loss": [1.1, 0.8] if val else [float("nan")] * 2})
    fig = viz.plot_history_grid({"three seeds": [history(0, False), history(0.1, False), history(0.2, False)],
                                 "one run": history(0, True)}, columns=3)
    panels = fig.axes[:2]
    assert [len(ax.lines) for ax in panels] == [6, 3]  # train and test per seed; train, validation and test
    assert {line.get_color() for line in panels[0].lines[0::2]} == {panels[1].lines[0].get_color()}  # train alike
    assert [text.get_text() for text in fig.legends[0].get_texts()] == ["train", "validation", "test"]
    assert not fig.axes[2].axison  # the unused third panel is blank
    assert [ax.get_xlabel() for ax in panels] == ["epoch", "epoch"]  # each the lowest of its column
    assert panels[0].get_ylim() == panels[1].get_ylim()  # one loss scale
    plt.close(fig)


@pytest.mark.parametrize("amx, avx512_bf16, suffix", [(True, True, " AMX"), (False, True, " AVX512-BF16"),
                                                     (False, False, "")])
def test_a_cpu_rows_device_names_its_bf16_instructions(monkeypatch, amx, avx512_bf16, suffix):
    # the bf16 kernels a CPU picks set a run's rounding, so the row must say which a CPU run had
    import torch

    from common import device
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16, raising=False)
    assert results.device_name(torch.device("cpu")) == f"cpu x{torch.get_num_threads()}{suffix}"
    assert device.native_bf16(torch.device("cpu")) == (amx or avx512_bf16)
