"""A test-only auth manager: Airflow's SimpleAuthManager, minus the DAGs listed for a user.

SimpleAuthManager decides DAG access by role alone (any VIEWER reads every DAG; per-DAG rules
need multi-team mode and bundles assigned to teams), so it cannot show that the Models page
hides a pipeline from one user. This subclass keeps everything else of SimpleAuthManager and
denies the DAG ids named in ``MLOPS_UI_TEST_HIDDEN_DAGS`` (``user=dag_a|dag_b;other=dag_c``).
Select it with ``AIRFLOW__CORE__AUTH_MANAGER=tests.support.ui_auth.RestrictedAuthManager``.
"""

from __future__ import annotations

import os
from typing import Any

from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager


def hidden_dags(username: str) -> set[str]:
    rules = dict(r.split("=", 1) for r in os.environ.get("MLOPS_UI_TEST_HIDDEN_DAGS", "").split(";") if r)
    return set(filter(None, rules.get(username, "").split("|")))


class RestrictedAuthManager(SimpleAuthManager):
    def is_authorized_dag(
        self, *, method: Any, user: Any, access_entity: Any = None, details: Any = None
    ) -> bool:
        if details is not None and details.id in hidden_dags(user.username):
            return False
        return super().is_authorized_dag(
            method=method, user=user, access_entity=access_entity, details=details
        )
