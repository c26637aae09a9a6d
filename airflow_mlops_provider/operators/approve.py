"""Human approval between the gate and the promotion, with Airflow 3's Human-in-the-loop (HITL).

:func:`approval_task` builds the standard provider's ``ApprovalOperator`` ("Approve" / "Reject")
whose form shows the decision record's Markdown summary (metrics of both models, thresholds,
verdict and reasons, trigger cause, data hashes). "Approve" lets the promotion run, which then
records the approver and time in the decision record; "Reject" skips the promotion, so the
champion does not move. Answer in the Airflow UI (Required Actions) or through the HITL REST API.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow_mlops_provider.operators.promote import DECISION_MARKDOWN_KEY


def approval_task(
    task_id: str,
    decision: Any,
    *,
    subject: str | None = None,
    response_timeout: timedelta | None = None,
    assigned_users: Any = None,
    **kwargs: Any,
) -> Any:
    """An ``ApprovalOperator`` showing the decision of the gate task behind ``decision`` (its XComArg).

    The task is placed downstream of the gate. ``response_timeout`` bounds the wait for a human
    (without a default option, a timeout fails the task and the champion stays); use it rather
    than ``execution_timeout``. ``assigned_users`` limits who may answer (``{"id", "name"}``).
    """
    from airflow.providers.standard.operators.hitl import ApprovalOperator

    gate_task_id = decision.operator.task_id
    pull = f"ti.xcom_pull(task_ids={gate_task_id!r})"
    subject = subject or (
        f"Promote {{{{ {pull}['model_name'] }}}} v{{{{ {pull}['version'] }}}} to champion? "
        f"(gate: {{{{ {pull}['verdict'] }}}})"
    )
    body = f"{{{{ ti.xcom_pull(task_ids={gate_task_id!r}, key={DECISION_MARKDOWN_KEY!r}) }}}}"
    task = ApprovalOperator(
        task_id=task_id,
        subject=subject,
        body=body,
        response_timeout=response_timeout,
        assigned_users=assigned_users,
        **kwargs,
    )
    decision.operator >> task
    return task
