"""A loopback stand-in for the Kubernetes API of a cluster running Kubeflow training jobs.

Not a faithful API server (none installs from the package registries here): it answers the few
calls the training backend makes (create, read and delete a namespaced custom object; list a
job's pods; read a pod's log) in the API's JSON shapes and records every request. With
``run_pods`` it plays the controller for a one-node job: the pod is a local process running the
container's command with the container's plain env and the ``PET_*`` variables a Kubeflow
controller injects, and the job's conditions follow the process (Complete/Succeeded on exit 0,
Failed otherwise). Otherwise a test sets the object's status itself.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from airflow_mlops_provider.core.training.kubernetes import status
from airflow_mlops_provider.core.training.procutil import free_port

_OBJECTS = re.compile(
    r"^/apis/(?P<group>[^/]+)/(?P<version>[^/]+)/namespaces/(?P<ns>[^/]+)/(?P<plural>[^/]+)(?:/(?P<name>[^/]+))?$"
)
_PODS = re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/pods(?:/(?P<pod>[^/]+)/log)?$")
_DONE = {"TrainJob": ("Complete", "JobsCompleted"), "PyTorchJob": ("Succeeded", "PyTorchJobSucceeded")}
_FAILED = {"TrainJob": "FailedJobs", "PyTorchJob": "PyTorchJobFailed"}


class KubeStandIn:
    def __init__(self, run_pods: bool = False) -> None:
        self.run_pods = run_pods
        self.requests: list[tuple[str, str, Any]] = []
        self.objects: dict[str, dict[str, Any]] = {}
        self.pods: dict[str, subprocess.Popen[bytes]] = {}
        self.logs: dict[str, bytes] = {}
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def kubeconfig(self) -> dict[str, Any]:
        return {
            "apiVersion": "v1", "kind": "Config", "current-context": "standin",
            "clusters": [{"name": "standin", "cluster": {"server": self.url}}],
            "users": [{"name": "standin", "user": {"token": "standin-token"}}],
            "contexts": [{"name": "standin", "context": {"cluster": "standin", "user": "standin"}}],
        }  # fmt: skip

    def __enter__(self) -> KubeStandIn:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        for proc in self.pods.values():
            if proc.poll() is None:
                proc.kill()
            proc.wait()

    def calls(self, method: str) -> list[tuple[str, Any]]:
        return [(path, body) for m, path, body in self.requests if m == method]

    def set_conditions(self, name: str, *conditions: dict[str, Any]) -> None:
        with self.lock:
            self.objects[name]["status"] = {"conditions": list(conditions)}

    # --- the pod of a one-node job, as a local process ---------------------------------------------
    def _start_pod(self, obj: dict[str, Any]) -> None:
        kind, name = obj["kind"], obj["metadata"]["name"]
        if kind == "TrainJob":
            container, procs = obj["spec"]["trainer"], obj["spec"]["trainer"]["numProcPerNode"]
        else:
            master = obj["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]
            container, procs = master["containers"][0], obj["spec"]["nprocPerNode"]
        env = {item["name"]: item["value"] for item in container["env"] if "value" in item}
        env.update(
            PATH=os.environ["PATH"], HOME=os.environ.get("HOME", "/tmp"), PET_NNODES="1", PET_NODE_RANK="0",
            PET_NPROC_PER_NODE=str(procs), PET_MASTER_ADDR="127.0.0.1", PET_MASTER_PORT=str(free_port()),
        )  # fmt: skip
        argv = [sys.executable, *container["command"][1:]]  # the container's python is this one
        self.pods[name] = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        threading.Thread(target=self._collect, args=(name,), daemon=True).start()

    def _collect(self, name: str) -> None:
        proc = self.pods[name]
        assert proc.stdout is not None
        for line in proc.stdout:
            with self.lock:
                self.logs[name] = self.logs.get(name, b"") + line

    def _status(self, obj: dict[str, Any]) -> dict[str, Any]:
        name, kind = obj["metadata"]["name"], obj["kind"]
        proc = self.pods.get(name)
        if proc is None:
            return obj.get("status") or {}
        when = "2026-01-01T00:00:00Z"
        code = proc.poll()
        if code is None:
            return {"conditions": []}
        if code == 0:
            kind_, reason = _DONE[kind]
            condition = {"type": kind_, "status": "True", "reason": reason, "message": "done"}
        else:
            condition = {
                "type": "Failed",
                "status": "True",
                "reason": _FAILED[kind],
                "message": f"exit code {code}",
            }
        return {"conditions": [{**condition, "lastTransitionTime": when}]}

    def _pod(self, obj: dict[str, Any]) -> dict[str, Any]:
        name, kind = obj["metadata"]["name"], obj["kind"]
        labels = (
            {"jobset.sigs.k8s.io/jobset-name": name, "batch.kubernetes.io/job-completion-index": "0",
             "jobset.sigs.k8s.io/job-index": "0"}
            if kind == "TrainJob"
            else {"training.kubeflow.org/job-name": name, "training.kubeflow.org/replica-type": "master",
                  "training.kubeflow.org/replica-index": "0"}
        )  # fmt: skip
        return {
            "metadata": {"name": f"{name}-node-0-0", "labels": labels},
            "status": {"containerStatuses": [{"name": status.trainer_container(kind), "restartCount": 0}]},
        }

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        return type("Handler", (_Handler,), {"standin": self})


class _Handler(BaseHTTPRequestHandler):
    standin: KubeStandIn  # set per server by KubeStandIn._handler

    def log_message(self, *args: Any) -> None:
        pass

    def _reply(self, code: int, body: Any, content: str = "application/json") -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", content)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length)) if length else None

    def _handle(self, method: str) -> None:
        url = urlsplit(self.path)
        body = self._body() if method in ("POST", "DELETE") else None
        with self.standin.lock:
            self.standin.requests.append((method, self.path, body))
        if self.headers.get("Authorization") != "Bearer standin-token":
            return self._reply(401, {"kind": "Status", "code": 401})
        found = _OBJECTS.match(url.path)
        if found:
            return self._objects(method, found.groupdict(), body)
        pods = _PODS.match(url.path)
        if pods and method == "GET":
            return self._pods(pods.groupdict(), parse_qs(url.query))
        return self._reply(404, {"kind": "Status", "code": 404})

    def _objects(self, method: str, where: dict[str, Any], body: Any) -> None:
        name = where["name"]
        if method == "POST":
            name = body["metadata"]["name"]
            if name in self.standin.objects:
                return self._reply(409, {"kind": "Status", "code": 409, "reason": "AlreadyExists"})
            self.standin.objects[name] = body
            if self.standin.run_pods:
                self.standin._start_pod(body)
            return self._reply(201, body)
        obj = self.standin.objects.get(name)
        if obj is None:
            return self._reply(404, {"kind": "Status", "code": 404, "reason": "NotFound"})
        if method == "DELETE":
            del self.standin.objects[name]
            proc = self.standin.pods.pop(name, None)
            if proc is not None and proc.poll() is None:
                proc.kill()
            return self._reply(200, {"kind": "Status", "status": "Success"})
        return self._reply(200, {**obj, "status": self.standin._status(obj)})

    def _pods(self, where: dict[str, Any], query: dict[str, list[str]]) -> None:
        if where["pod"] is None:
            selector = query.get("labelSelector", [""])[0]
            items = [self.standin._pod(o) for o in self.standin.objects.values()]
            items = [p for p in items if selector.split("=")[1] in p["metadata"]["labels"].values()]
            return self._reply(200, {"kind": "PodList", "items": items})
        job = where["pod"].removesuffix("-node-0-0")
        with self.standin.lock:
            text = self.standin.logs.get(job, b"")
        return self._reply(200, text, "text/plain")

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_DELETE(self) -> None:
        self._handle("DELETE")
