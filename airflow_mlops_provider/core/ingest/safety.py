"""Names that become path components must not escape the artifact root.

The checks live in :mod:`airflow_mlops_provider.core.paths`, shared by every stage; this
module keeps the ingest-era import path working.
"""

from airflow_mlops_provider.core.paths import UnsafeNameError, ensure_within, safe_component

__all__ = ["UnsafeNameError", "ensure_within", "safe_component"]
