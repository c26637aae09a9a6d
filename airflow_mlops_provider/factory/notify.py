"""Notifications on failure and on promotion: the task log, email, a JSON webhook or a callable."""

from __future__ import annotations

import json
from typing import Any

from airflow.sdk import BaseNotifier


class PipelineNotifier(BaseNotifier):
    """Send one pipeline event (``failure`` or ``promotion``) to the configured targets.

    Used as an Airflow callback (``on_failure_callback`` of the DAGs and tasks,
    ``on_success_callback`` of the promote task). Heavy or networked work happens only when it
    fires. A failing target is logged and does not hide the others.
    """

    def __init__(self, pipeline: str, event: str, targets: list[dict[str, Any]]) -> None:
        super().__init__()
        self.pipeline = pipeline
        self.event = event
        self.targets = targets

    def notify(self, context: Any) -> None:
        from airflow_mlops_provider.factory.config import Notifier

        message = self.message(context)
        for target in self.targets:
            try:
                _send(Notifier.model_validate(target), message, context)
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
        if self.event == "promotion" and ti is not None:
            decision = ti.xcom_pull(task_ids=_decision_task(ti)) if _decision_task(ti) else None
            if isinstance(decision, dict):
                keys = ("model_name", "version", "verdict", "reasons", "record_uri")
                body["decision"] = {k: decision.get(k) for k in keys}
        if self.event == "failure":
            body["error"] = str(context.get("exception") or context.get("reason") or "")[:500]
        return body


def _decision_task(ti: Any) -> str | None:
    task = getattr(ti, "task", None)
    upstream = getattr(task, "upstream_task_ids", ()) or ()
    return "gate" if "gate" in upstream or "approve" in upstream else None


def _send(target: Any, message: dict[str, Any], context: Any) -> None:
    text = f"[mlops] {message['pipeline']}: {message['event']} in {message['dag_id']} run {message['run_id']}"
    if target.type == "log":
        import logging

        logging.getLogger("airflow.task").info("%s %s", text, json.dumps(message, default=str))
    elif target.type == "webhook":
        import urllib.request

        data = json.dumps(message, default=str).encode()
        request = urllib.request.Request(target.url, data=data, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()
    elif target.type == "email":
        from airflow.providers.smtp.notifications.smtp import SmtpNotifier

        body = f"<pre>{json.dumps(message, indent=2, default=str)}</pre>"
        SmtpNotifier(to=target.to, subject=text, html_content=body, smtp_conn_id=target.smtp_conn_id).notify(
            context
        )
    elif target.type == "callable":
        import importlib

        module, _, name = target.callable.partition(":")
        getattr(importlib.import_module(module), name)(message, context)


def notifier(pipeline: str, event: str, targets: list[dict[str, Any]]) -> list[PipelineNotifier]:
    """The callback list for ``event`` (empty when no target is configured)."""
    if not targets:
        return []
    return [PipelineNotifier(pipeline, event, [dict(t) for t in targets])]
