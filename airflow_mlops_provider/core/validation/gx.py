"""Run a list of expectations with Great Expectations 1.x: ephemeral context, pandas engine."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

MAX_EXAMPLES = 10
RESULT_FORMAT = {"result_format": "SUMMARY", "partial_unexpected_count": 20}


class GxSuite:
    """An ephemeral context and suite built once, validated against any number of DataFrames."""

    def __init__(self, expectations: Sequence[dict[str, Any]]) -> None:
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        context = gx.get_context(mode="ephemeral")
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        self._definition = (
            context.data_sources.add_pandas("snapshot")
            .add_dataframe_asset("rows")
            .add_batch_definition_whole_dataframe("whole")
        )
        self._suite = gx.ExpectationSuite(name="mlops", expectations=[expectation(e) for e in expectations])

    def validate(self, df: pd.DataFrame) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """One result dict per expectation, and GX's own JSON result."""
        batch = self._definition.get_batch(batch_parameters={"dataframe": df})
        result = batch.validate(self._suite, result_format="SUMMARY")
        # great_expectations leaves to_json_dict unannotated
        return [_summarise(r) for r in result.results], result.to_json_dict()  # type: ignore[no-untyped-call]


def run_gx(
    df: pd.DataFrame, expectations: Sequence[dict[str, Any]]
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Validate ``df``; return (one result dict per expectation, GX's own JSON result)."""
    return GxSuite(expectations).validate(df)


def expectation(item: Mapping[str, Any]) -> Any:
    """The GX expectation object of one normalised suite entry."""
    from great_expectations.expectations.registry import get_expectation_impl

    return get_expectation_impl(item["type"])(**item["kwargs"], meta=item.get("meta") or None)


def gx_kwargs(item: Mapping[str, Any]) -> dict[str, Any]:
    """The expectation's arguments as GX normalises them (what its results report)."""
    return {k: v for k, v in dict(expectation(item).configuration.kwargs).items() if k != "batch_id"}


def verdict_from_metrics(item: Mapping[str, Any], metrics: Mapping[str, Any]) -> dict[str, Any]:
    """GX's own verdict for an aggregate expectation, fed metrics computed elsewhere (streamed)."""
    from great_expectations.core import ExpectationValidationResult

    outcome = expectation(item)._validate(metrics=dict(metrics), runtime_configuration=dict(RESULT_FORMAT))
    if isinstance(outcome, ExpectationValidationResult):
        success, result = outcome.success, outcome.result
    else:
        success, result = outcome["success"], outcome.get("result")
    return make_check(item["type"], gx_kwargs(item), bool(success), dict(result or {}), None)


def _summarise(item: Any) -> dict[str, Any]:
    config = item.expectation_config
    kwargs = {k: v for k, v in dict(config.kwargs).items() if k != "batch_id"}
    return make_check(config.type, kwargs, bool(item.success), dict(item.result or {}), item.exception_info)


def make_check(
    name: str, kwargs: dict[str, Any], success: bool, result: dict[str, Any], exception: Any
) -> dict[str, Any]:
    examples = result.get("partial_unexpected_list") or []
    return {
        "expectation": name,
        "column": kwargs.get("column") or kwargs.get("column_list") or kwargs.get("column_A"),
        "success": success,
        "observed": result.get("observed_value"),
        "expected": {k: v for k, v in kwargs.items() if k not in ("column", "result_format")},
        "unexpected_count": result.get("unexpected_count"),
        "unexpected_percent": result.get("unexpected_percent"),
        "element_count": result.get("element_count"),
        "missing_count": result.get("missing_count"),
        "examples": list(examples)[:MAX_EXAMPLES],
        "exception": _exception(exception),
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
