"""Sphinx configuration of the provider's docs: ``make docs`` builds them with warnings as errors."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE / "_ext")]
# autodoc imports the operators, which import airflow.sdk: keep Airflow off the user's home.
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="mlops-docs-airflow-"))
os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")

project = "airflow-mlops-provider"
author = "airflow-mlops-provider developers"
copyright = "the airflow-mlops-provider developers"

extensions = ["myst_parser", "sphinx.ext.autodoc", "mlops_docs"]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build"]
myst_heading_anchors = 3
autodoc_member_order = "bysource"
autodoc_default_options = {"undoc-members": False}
html_theme = "furo"
html_title = "airflow-mlops-provider"
