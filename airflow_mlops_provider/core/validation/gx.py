"""Run a list of expectations with Great Expectations 1.x: ephemeral context, pandas engine."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

MAX_EXAMPLES = 10


def run_gx(
    df: pd.DataFrame, expectations: Sequence[dict[str, Any]]
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Validate ``df``; return (one result dict per expectation, GX's own JSON result)."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig
    from great_expectations.expectations.registry import get_expectation_impl

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch = (
        context.data_sources.add_pandas("snapshot")
        .add_dataframe_asset("rows")
        .add_batch_definition_whole_dataframe("whole")
        .get_batch(batch_parameters={"dataframe": df})
    )
    suite = gx.ExpectationSuite(
        name="mlops",
        expectations=[
            get_expectation_impl(e["type"])(**e["kwargs"], meta=e.get("meta") or None) for e in expectations
        ],
    )
    result = batch.validate(suite, result_format="SUMMARY")
    # great_expectations leaves to_json_dict unannotated
    return [_summarise(r) for r in result.results], result.to_json_dict()  # type: ignore[no-untyped-call]


def _summarise(item: Any) -> dict[str, Any]:
    config = item.expectation_config
    kwargs = {k: v for k, v in dict(config.kwargs).items() if k != "batch_id"}
    result = dict(item.result or {})
    examples = result.get("partial_unexpected_list") or []
    return {
        "expectation": config.type,
        "column": kwargs.get("column") or kwargs.get("column_list") or kwargs.get("column_A"),
        "success": bool(item.success),
        "observed": result.get("observed_value"),
        "expected": {k: v for k, v in kwargs.items() if k not in ("column", "result_format")},
        "unexpected_count": result.get("unexpected_count"),
        "unexpected_percent": result.get("unexpected_percent"),
        "element_count": result.get("element_count"),
        "examples": list(examples)[:MAX_EXAMPLES],
        "exception": _exception(item.exception_info),
        "source": "gx",
    }


def _exception(info: Any) -> str | None:
    if not info:
        return None
    if isinstance(info, dict) and "raised_exception" in info:
        return info.get("exception_message") if info.get("raised_exception") else None
    if isinstance(info, dict):
        for value in info.values():
            message = _exception(value)
            if message:
                return message
    return None
