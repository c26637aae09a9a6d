"""A training entry point whose first launch fails mid-way, for the retry tests.

Imported by torchrun workers as ``tests.support.training_retry:fail_first_launch`` (workers start
in the repository root).
"""

from __future__ import annotations

from typing import Any

ENTRY = "tests.support.training_retry:fail_first_launch"
FAIL_AFTER_EPOCH = 1


def fail_first_launch(ctx: Any) -> Any:
    """The built-in trainer; a launch that starts without a checkpoint raises right after writing the
    checkpoint of epoch ``FAIL_AFTER_EPOCH``. A later launch on the same run resumes and finishes."""
    from airflow_mlops_provider.core.storage import Location
    from airflow_mlops_provider.core.training import tabular
    from airflow_mlops_provider.core.training.checkpoints import list_checkpoints

    first = not list_checkpoints(Location(ctx.checkpoint_dir, ctx.storage_options))
    original = ctx.save_checkpoint

    def save(epoch: int, state: dict[str, Any]) -> None:
        original(epoch, state)
        if first and epoch == FAIL_AFTER_EPOCH:
            raise RuntimeError(f"injected failure of the first launch after the checkpoint of epoch {epoch}")

    ctx.save_checkpoint = save
    return tabular.train(ctx)
