"""``mlops-serve`` (or ``python -m airflow_mlops_provider.serving``): run the prediction service.

Example: ``mlops-serve --pipeline cancer=cancer_diagnosis@champion --tracking-uri http://127.0.0.1:5000``.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence

from airflow_mlops_provider.core.names import CHAMPION
from airflow_mlops_provider.serving.app import PipelineTarget, ServingConfig, create_app
from airflow_mlops_provider.serving.slot import DEFAULT_POLL_S


def parse_pipeline(text: str) -> tuple[str, PipelineTarget]:
    """``name=model[@alias]`` (alias ``champion`` when left out)."""
    name, sep, target = text.partition("=")
    model, _, alias = target.partition("@")
    if not sep or not name or not model:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=MODEL[@ALIAS]")
    return name, PipelineTarget(model, alias or CHAMPION)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="mlops-serve", description="Serve registered models behind their aliases."
    )
    parser.add_argument(
        "--pipeline", action="append", type=parse_pipeline, required=True, metavar="NAME=MODEL[@ALIAS]",
        help="a pipeline to serve at /v1/NAME/predict (repeatable)",
    )  # fmt: skip
    parser.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI"))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8008)
    parser.add_argument("--poll", type=float, default=DEFAULT_POLL_S, help="seconds between alias checks")
    parser.add_argument(
        "--log-root", default=os.environ.get("MLOPS_SERVE_LOG_ROOT"),
        help="log every request as Parquet under LOG_ROOT/NAME/serving/requests/ (the artifact root)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if not args.tracking_uri:
        parser.error("--tracking-uri (or MLFLOW_TRACKING_URI) is required")
    names = [name for name, _ in args.pipeline]
    if len(set(names)) != len(names):
        parser.error(f"pipeline names repeat: {names}")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    import uvicorn

    args = parse_args(argv)
    config = ServingConfig(dict(args.pipeline), args.tracking_uri, args.poll, args.log_root)
    uvicorn.run(create_app(config), host=args.host, port=args.port, log_level="info")


if __name__ == "__main__":
    main()
