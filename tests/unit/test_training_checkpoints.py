"""Checkpoints: atomic writes, newest complete one wins, weights-only loads, entry point resolution."""

from __future__ import annotations

import io

import pytest
import torch

from airflow_mlops_provider.core.storage import Location
from airflow_mlops_provider.core.training.checkpoints import (
    CheckpointError,
    list_checkpoints,
    load_latest_checkpoint,
    save_checkpoint,
)
from airflow_mlops_provider.core.training.entrypoint import EntryPointError, resolve_entry_point
from airflow_mlops_provider.core.training.errors import is_fatal


class Evil:
    """Unpickling this would run code; a weights-only load must refuse it."""

    def __reduce__(self):
        return (print, ("pwned",))


def test_save_and_resume_from_the_newest_complete_checkpoint(tmp_path):
    where = Location(tmp_path.as_uri())
    assert load_latest_checkpoint(where) is None
    model = torch.nn.Linear(3, 2)
    optimiser = torch.optim.AdamW(model.parameters())
    model(torch.ones(1, 3)).sum().backward()
    optimiser.step()
    for epoch in range(3):
        state = {
            "model": model.state_dict(),
            "optimizer": optimiser.state_dict(),
            "rng": torch.get_rng_state(),
        }
        save_checkpoint(where, epoch, {**state, "epoch": epoch}, keep=2)
    # A kill during a save leaves only a temporary file behind: it is never taken for a checkpoint.
    (tmp_path / ".tmp-0123-checkpoint-000009.pt").write_bytes(b"half a checkpo")
    assert [epoch for epoch, _ in list_checkpoints(where)] == [1, 2]
    epoch, state = load_latest_checkpoint(where)
    assert epoch == 2 and state["epoch"] == 2
    torch.testing.assert_close(state["model"]["weight"], model.state_dict()["weight"])
    fresh = torch.optim.AdamW(torch.nn.Linear(3, 2).parameters())
    fresh.load_state_dict(state["optimizer"])


def test_a_checkpoint_with_pickled_code_is_refused_not_executed(tmp_path, capsys):
    where = Location(tmp_path.as_uri())
    buffer = io.BytesIO()
    torch.save({"model": {}, "payload": Evil()}, buffer)
    (tmp_path / "checkpoint-000004.pt").write_bytes(buffer.getvalue())
    with pytest.raises(CheckpointError, match=r"Cannot load checkpoint .*checkpoint-000004\.pt"):
        load_latest_checkpoint(where)
    assert "pwned" not in capsys.readouterr().out


@pytest.mark.parametrize(
    ("entry_point", "message"),
    [
        ("no_colon_here", "Malformed training entry point 'no_colon_here'"),
        ("pkg.module:", "Malformed"),
        ("a b:c", "Malformed"),
        ("airflow_mlops_provider.nope:train", "cannot import module 'airflow_mlops_provider.nope'"),
        ("airflow_mlops_provider.core.training.tabular:trian", "has no attribute 'trian'"),
        ("tests.unit.test_training_fns:not_callable", "is not callable"),
    ],
)
def test_bad_entry_points_are_named(entry_point, message):
    with pytest.raises(EntryPointError, match=message) as caught:
        resolve_entry_point(entry_point)
    assert is_fatal(caught.value)


def test_the_default_entry_point_resolves():
    from airflow_mlops_provider.core.training.tabular import train

    assert resolve_entry_point("airflow_mlops_provider.core.training.tabular:train") is train


def test_the_launcher_checks_entry_points_without_running_user_code(tmp_path, monkeypatch):
    from airflow_mlops_provider.core.training.entrypoint import check_entry_point_static

    (tmp_path / "user_training.py").write_text(
        "raise SystemExit('imported!')\nif True:\n    def train(ctx):\n        return None\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    check_entry_point_static("user_training:train")  # found statically: the module was not executed
    with pytest.raises(EntryPointError, match="user_training has no attribute 'fit'"):
        check_entry_point_static("user_training:fit")
    with pytest.raises(EntryPointError, match="cannot import module 'no_such_user_module'"):
        check_entry_point_static("no_such_user_module:train")
