"""Training checkpoints on the artifact root: atomic writes, newest complete one wins, safe loads.

A checkpoint is ``checkpoint-<epoch:06d>.pt`` inside the run's checkpoint directory. It is
serialised into memory, written to a temporary sibling and moved into place
(:meth:`Location.write_bytes_atomic`), so a kill during the save leaves at most a stray
temporary file, never a truncated ``checkpoint-*.pt``. Loading uses
``torch.load(weights_only=True)``: tensors, numbers, strings and containers only, never
arbitrary pickled objects. torch is imported by the functions that need it, so the launcher can
list a run's checkpoints without it.
"""

from __future__ import annotations

import io
import posixpath
import re
from collections.abc import Mapping
from typing import Any

from airflow_mlops_provider.core.errors import PermanentError
from airflow_mlops_provider.core.storage import Location

_NAME = re.compile(r"^checkpoint-(\d{6})\.pt$")


class CheckpointError(PermanentError, RuntimeError):
    """A checkpoint could not be read."""


def checkpoint_name(epoch: int) -> str:
    return f"checkpoint-{epoch:06d}.pt"


def list_checkpoints(directory: Location) -> list[tuple[int, Location]]:
    """Complete checkpoints in ``directory``, oldest first (temporary files are ignored)."""
    if not directory.exists():
        return []
    found = []
    for path in directory.fs.ls(directory.path, detail=False):
        match = _NAME.match(posixpath.basename(str(path).rstrip("/")))
        if match:
            found.append((int(match.group(1)), directory.join(match.group(0))))
    return sorted(found, key=lambda item: item[0])


def save_checkpoint(directory: Location, epoch: int, state: Mapping[str, Any], keep: int = 2) -> Location:
    """Write ``state`` as the checkpoint for ``epoch`` (atomically), then drop all but the newest ``keep``."""
    import torch

    buffer = io.BytesIO()
    torch.save(dict(state), buffer)
    target = directory.join(checkpoint_name(epoch))
    target.write_bytes_atomic(buffer.getvalue())
    for _, old in list_checkpoints(directory)[:-keep]:
        old.fs.rm(old.path)
    return target


def load_latest_checkpoint(directory: Location) -> tuple[int, dict[str, Any]] | None:
    """``(epoch, state)`` of the newest complete checkpoint, or ``None`` when there is none."""
    found = list_checkpoints(directory)
    if not found:
        return None
    import torch

    epoch, location = found[-1]
    try:
        state = torch.load(io.BytesIO(location.read_bytes()), map_location="cpu", weights_only=True)
    except Exception as err:  # an unreadable checkpoint must name itself
        raise CheckpointError(f"Cannot load checkpoint {location.uri}: {err}") from err
    return epoch, state
