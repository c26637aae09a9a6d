"""Watch a Kubeflow training job (``TrainJob`` or ``PyTorchJob``) from the triggerer.

Every ``poll_s`` seconds the trigger reads the custom object and the job's pods through the
``cncf.kubernetes`` provider's :class:`AsyncKubernetesHook` (kubernetes_asyncio), copies the new
lines of the rank-0 pod's log into the task log, and fires once:

- ``complete`` / ``failed``: the job's final condition, with its reason and message;
- ``deleted``: the object is gone (deleted from outside);
- ``timed_out``: ``deadline`` (the task's execution timeout) passed: the trigger deleted the job.

Every event carries the container restarts seen and ``carry``, the operator's state. When a user
kills the deferred task (mark failed, clear), :meth:`on_kill` deletes the job.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent


class KubeflowJobTrigger(BaseTrigger):
    """Wait for a Kubeflow training job to finish (see the module docstring)."""

    def __init__(
        self,
        *,
        kind: str,
        name: str,
        namespace: str,
        kubernetes_conn_id: str | None,
        poll_s: float,
        deadline: str | None,
        carry: dict[str, Any],
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # BaseTrigger.__init__ is unannotated
        self.kind, self.name, self.namespace = kind, name, namespace
        self.kubernetes_conn_id, self.poll_s = kubernetes_conn_id, poll_s
        self.deadline, self.carry = deadline, carry
        self._printed: dict[str, int] = {}  # pod/container restart -> log lines already copied
        self._restarts = 0

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "kind": self.kind,
                "name": self.name,
                "namespace": self.namespace,
                "kubernetes_conn_id": self.kubernetes_conn_id,
                "poll_s": self.poll_s,
                "deadline": self.deadline,
                "carry": self.carry,
            },
        )

    def _hook(self) -> Any:
        from airflow.providers.cncf.kubernetes.hooks.kubernetes import AsyncKubernetesHook

        return AsyncKubernetesHook(conn_id=self.kubernetes_conn_id)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from airflow_mlops_provider.core.training.kubernetes.status import job_state

        hook = self._hook()
        while True:
            async with hook.get_conn() as conn:
                obj = await self._read(conn)
                if obj is not None:
                    await self._copy_logs(conn)
            if obj is None:
                yield self._event("deleted", "Deleted", f"{self.kind} {self.name} was deleted from outside")
                return
            state = job_state(self.kind, obj)
            if state.finished:
                yield self._event(state.phase, state.reason, state.message)
                return
            if self.deadline and datetime.now(UTC) >= datetime.fromisoformat(self.deadline):
                await self.delete(hook)
                message = f"the task's execution timeout passed ({self.deadline}): {self.kind} deleted"
                yield self._event("timed_out", "DeadlineExceeded", message)
                return
            await asyncio.sleep(self.poll_s)

    async def on_kill(self) -> None:
        """The task was killed by a user while deferred: delete the job and its pods."""
        await self.delete(self._hook())

    async def delete(self, hook: Any) -> None:
        from kubernetes_asyncio.client import ApiException, CustomObjectsApi, V1DeleteOptions

        from airflow_mlops_provider.core.training.kubernetes.manifests import api

        group, version, plural = api(self.kind)
        async with hook.get_conn() as conn:
            try:
                await CustomObjectsApi(conn).delete_namespaced_custom_object(
                    group, version, self.namespace, plural, self.name,
                    body=V1DeleteOptions(propagation_policy="Background"),
                )  # fmt: skip
            except ApiException as err:
                if err.status != 404:
                    raise
        self.log.info("Deleted %s %s/%s", self.kind, self.namespace, self.name)

    async def _read(self, conn: Any) -> dict[str, Any] | None:
        from kubernetes_asyncio.client import ApiException, CustomObjectsApi

        from airflow_mlops_provider.core.training.kubernetes.manifests import api

        group, version, plural = api(self.kind)
        try:
            found: dict[str, Any] = await CustomObjectsApi(conn).get_namespaced_custom_object(
                group, version, self.namespace, plural, self.name
            )
        except ApiException as err:
            if err.status == 404:
                return None
            raise
        return found

    async def _copy_logs(self, conn: Any) -> None:
        """Copy the rank-0 pod's new log lines into the task log; note the job's container restarts."""
        from kubernetes_asyncio.client import ApiException, CoreV1Api

        from airflow_mlops_provider.core.training.kubernetes import status

        core = CoreV1Api(conn)
        selector = status.pod_selector(self.kind, self.name)
        # a raw response: the pods as the API writes them (what the status functions read)
        listed: Any = await core.list_namespaced_pod(
            self.namespace, label_selector=selector, _preload_content=False
        )
        pods = json.loads(await listed.read()).get("items") or []
        self._restarts = max(self._restarts, status.restarts(pods))
        container = status.trainer_container(self.kind)
        for pod in (p for p in pods if status.is_rank0(self.kind, p)):
            pod_name = pod["metadata"]["name"]
            try:
                log: Any = await core.read_namespaced_pod_log(
                    pod_name, self.namespace, container=container, _preload_content=False
                )
                text = (await log.read()).decode(errors="replace")
            except ApiException:  # not started yet, or gone: try again at the next poll
                continue
            self._print(pod_name, pod, text.splitlines())

    def _print(self, pod_name: str, pod: dict[str, Any], lines: list[str]) -> None:
        statuses = (pod.get("status") or {}).get("containerStatuses") or []
        key = f"{pod_name}/{max((int(s.get('restartCount') or 0) for s in statuses), default=0)}"
        done = self._printed.get(key, 0)
        for line in lines[done:]:
            self.log.info("[%s] %s", pod_name, line)
        self._printed[key] = max(done, len(lines))

    def _event(self, outcome: str, reason: str, message: str) -> TriggerEvent:
        return TriggerEvent(  # type: ignore[no-untyped-call]
            {
                "status": outcome,
                "reason": reason,
                "message": message,
                "restarts": self._restarts,
                "kind": self.kind,
                "name": self.name,
                "namespace": self.namespace,
                "carry": self.carry,
            }
        )
