"""Human approval between the gate and the promotion, with Airflow 3's Human-in-the-loop (HITL).

:class:`ApproveModelOperator` is the standard provider's ``ApprovalOperator`` ("Approve" /
"Reject") whose form shows the decision record's Markdown summary (metrics of both models,
thresholds, verdict and reasons, trigger cause, data hashes). "Approve" lets the promotion run,
which then records the approver and time in the decision record; "Reject" skips the promotion,
so the champion does not move, and the task's success callback records the rejection. Answer in
the Airflow UI (Required Actions) or through the HITL REST API.

The standard provider's HITL module is imported at module level (a subclass needs its base); it
is light (Airflow's own, no ML library), and the DAG factory imports this module only for
pipelines that ask for approval.
"""

from __future__ import annotations

import warnings
from datetime import timedelta
from typing import Any

from airflow.exceptions import AirflowProviderDeprecationWarning
from airflow.providers.standard.operators.hitl import ApprovalOperator

from airflow_mlops_provider.operators.promote import DECISION_MARKDOWN_KEY


class ApproveModelOperator(ApprovalOperator):
    """Ask a human to approve the decision of the gate task behind ``decision`` (its XComArg).

    The task is placed downstream of the gate. ``response_timeout`` bounds the wait for a human
    (without a default option, a timeout fails the task and the champion stays); use it rather
    than ``execution_timeout``. ``assigned_users`` limits who may answer (``{"id", "name"}``).
    A "Reject" answer is written into the decision record (status ``rejected``, who and when).

    :param decision: the gate task's output (XComArg).
    :param subject: form title (default: model, version and verdict of the decision).
    :param mlflow_conn_id: MLflow connection used to record a rejection.
    """

    def __init__(
        self,
        *,
        decision: Any,
        subject: str | None = None,
        response_timeout: timedelta | None = None,
        assigned_users: Any = None,
        mlflow_conn_id: str = "mlflow_default",
        **kwargs: Any,
    ) -> None:
        gate_task_id = decision.operator.task_id
        pull = f"ti.xcom_pull(task_ids={gate_task_id!r})"
        subject = subject or (
            f"Promote {{{{ {pull}['model_name'] }}}} v{{{{ {pull}['version'] }}}} to champion? "
            f"(gate: {{{{ {pull}['verdict'] }}}})"
        )
        body = f"{{{{ ti.xcom_pull(task_ids={gate_task_id!r}, key={DECISION_MARKDOWN_KEY!r}) }}}}"
        callbacks = kwargs.pop("on_success_callback", None) or []
        callbacks = list(callbacks) if isinstance(callbacks, list | tuple) else [callbacks]
        super().__init__(
            subject=subject,
            body=body,
            response_timeout=response_timeout,
            assigned_users=assigned_users,
            on_success_callback=[*callbacks, RecordRejection(gate_task_id, mlflow_conn_id)],
            **kwargs,
        )
        self.mlflow_conn_id = mlflow_conn_id
        decision.operator >> self


def approval_task(task_id: str, decision: Any, **kwargs: Any) -> ApproveModelOperator:
    """Deprecated: use ``ApproveModelOperator(task_id=..., decision=...)``."""
    warnings.warn(
        f"{__name__}.approval_task is deprecated; use {__name__}.ApproveModelOperator",
        AirflowProviderDeprecationWarning,
        stacklevel=2,
    )
    return ApproveModelOperator(task_id=task_id, decision=decision, **kwargs)


class RecordRejection:
    """Success callback of the approval task: a "Reject" answer goes into the decision record.

    The approval task succeeds either way; on "Reject" it skips the promotion, which therefore
    cannot record anything itself.
    """

    def __init__(self, gate_task_id: str, mlflow_conn_id: str) -> None:
        self.gate_task_id = gate_task_id
        self.mlflow_conn_id = mlflow_conn_id

    def __call__(self, context: Any) -> None:
        # execute_complete() left the answer on the operator just before it skipped the promotion.
        task, ti = context["task"], context["ti"]
        answer = dict(getattr(task, "hitl_summary_extra", None) or {})
        if list(answer.get("chosen_options") or []) != ["Reject"]:
            return
        from airflow_mlops_provider.core.promotion import record_rejection
        from airflow_mlops_provider.hooks.mlflow import MlflowHook

        user = answer.get("responded_by_user")
        approval = {
            "chosen_options": ["Reject"],
            "responded_by_user": dict(user) if isinstance(user, dict) else user,
            "responded_at": answer.get("responded_at"),
        }
        try:
            decision = ti.xcom_pull(task_ids=self.gate_task_id)
            uri = record_rejection(MlflowHook(self.mlflow_conn_id).settings, decision, approval)
            task.log.info("Promotion rejected by %s; recorded in %s", user, uri)
        except Exception:  # the answer stands in Airflow even if the record cannot be updated now
            task.log.exception("Could not record the rejection in the decision record")
