"""Notifications on failure and on promotion: the task log, email, a JSON webhook or a callable."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseNotifier

if TYPE_CHECKING:
    from airflow.sdk import Context


class PipelineNotifier(BaseNotifier):
    """Send one pipeline event (``failure`` or ``promotion``) to the configured targets.

    Used as an Airflow callback (``on_failure_callback`` of the DAGs and tasks,
    ``on_success_callback`` of the promote task). Heavy or networked work happens only when it
    fires. A failing target is logged and does not hide the others.

    :param pipeline: pipeline name, in every message.
    :param event: ``"failure"`` or ``"promotion"``.
    :param targets: ``{"type": "log" | "email" | "webhook" | "callable", "to", "url", "callable",
        "smtp_conn_id"}`` dicts (the pipeline config's validated ``Notifier`` entries).
    :param decision_task_id: task whose XCom is the gate's decision; its model, version, verdict,
        reasons and record go into the message as ``decision``.
    """

    def __init__(
        self,
        pipeline: str,
        event: str,
        targets: list[dict[str, Any]],
        decision_task_id: str | None = None,
    ) -> None:
        super().__init__()
        self.pipeline = pipeline
        self.event = event
        self.targets = targets
        self.decision_task_id = decision_task_id

    def notify(self, context: Any) -> None:
        message = self.message(context)
        for target in self.targets:
            try:
                _send(target, message, context)
            except Exception:  # one broken target must not hide the others
                self.log.exception("Notification to %s failed", target.get("type"))

    def message(self, context: Any) -> dict[str, Any]:
        """The event as a small JSON-able dict (what a webhook receives)."""
        dag_run = context.get("dag_run")
        ti = context.get("ti") or context.get("task_instance")
        body: dict[str, Any] = {
            "pipeline": self.pipeline,
            "event": self.event,
            "dag_id": getattr(dag_run, "dag_id", None),
            "run_id": getattr(dag_run, "run_id", None),
            "task_id": getattr(ti, "task_id", None),
        }
        if self.decision_task_id and ti is not None:
            decision = ti.xcom_pull(task_ids=self.decision_task_id)
            if isinstance(decision, dict):
                keys = ("model_name", "version", "verdict", "reasons", "record_uri")
                body["decision"] = {k: decision.get(k) for k in keys}
        if self.event == "failure":
            body["error"] = str(context.get("exception") or context.get("reason") or "")[:500]
        return body


def _send(target: dict[str, Any], message: dict[str, Any], context: Any) -> None:
    text = f"[mlops] {message['pipeline']}: {message['event']} in {message['dag_id']} run {message['run_id']}"
    kind = target["type"]
    if kind == "log":
        import logging

        logging.getLogger("airflow.task").info("%s %s", text, json.dumps(message, default=str))
    elif kind == "webhook":
        import urllib.request

        data = json.dumps(message, default=str).encode()
        request = urllib.request.Request(
            target["url"], data=data, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()
    elif kind == "email":
        from airflow.providers.smtp.notifications.smtp import SmtpNotifier

        body = f"<pre>{json.dumps(message, indent=2, default=str)}</pre>"
        smtp_conn_id = target.get("smtp_conn_id") or "smtp_default"
        SmtpNotifier(to=target["to"], subject=text, html_content=body, smtp_conn_id=smtp_conn_id).notify(
            context
        )
    elif kind == "callable":
        import importlib

        module, _, name = str(target["callable"]).partition(":")
        getattr(importlib.import_module(module), name)(message, context)


def notifier(
    pipeline: str, event: str, targets: Sequence[Mapping[str, Any]], decision_task_id: str | None = None
) -> list[Callable[[Context], None]]:
    """The callback list for ``event`` (empty when no target is configured)."""
    if not targets:
        return []
    return [PipelineNotifier(pipeline, event, [dict(t) for t in targets], decision_task_id)]
