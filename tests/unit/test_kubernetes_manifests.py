"""Kubeflow manifests against the published CRD schemas, and the status -> outcome mapping.

The schemas are vendored from kubeflow/trainer: ``trainer.kubeflow.org_trainjobs.yaml`` at tag
v2.3.0 (commit 658725bdae5c7e3a0854d93ac6ff492e109a22ab) and ``kubeflow.org_pytorchjobs.yaml`` at
tag v1.9.4 (commit 4445c12aa62e4345b0c2c6ac9b215a70eca46ed7). Validation is Draft 7 over
``openAPIV3Schema`` with ``additionalProperties: false`` added wherever properties are listed, so an
unknown or misplaced field fails as the API server's structural pruning would drop it. CEL rules
are not run by jsonschema: the one about names is checked by hand below. No cluster involved.
"""

from __future__ import annotations

import copy
import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from airflow_mlops_provider.core.training.kubernetes import manifests, status
from airflow_mlops_provider.core.training.kubernetes.manifests import (
    ClusterJob,
    job_name,
    manifest,
    plain_env,
)

CRDS = Path(__file__).resolve().parents[1] / "data" / "crds"
FILES = {"TrainJob": "trainer.kubeflow.org_trainjobs.yaml", "PyTorchJob": "kubeflow.org_pytorchjobs.yaml"}
RFC1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")  # the TrainJob's CEL rule on metadata.name
SPEC = {
    "entry_point": "pkg.mod:train",
    "run_id": "r" * 32,
    "snapshot": {"uri": "s3://b/snap", "sha256": "ab"},
}


def _closed(schema: Any) -> Any:
    """The schema with ``additionalProperties: false`` wherever properties are listed (recursively)."""
    if isinstance(schema, list):
        return [_closed(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: _closed(value) for key, value in schema.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


@cache
def validator(kind: str) -> jsonschema.Draft7Validator:
    crd = yaml.load((CRDS / FILES[kind]).read_text(), Loader=yaml.CSafeLoader)
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == manifests.api(kind)[1]]
    assert crd["spec"]["names"]["kind"] == kind and crd["spec"]["group"] == manifests.api(kind)[0]
    assert crd["spec"]["names"]["plural"] == manifests.api(kind)[2]
    return jsonschema.Draft7Validator(_closed(version["schema"]["openAPIV3Schema"]))


def _errors(kind: str, body: dict[str, Any]) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator(kind).iter_errors(body)]


def _job(kind: str, nodes: int, gpus: int, **extra: Any) -> ClusterJob:
    values: dict[str, Any] = dict(
        kind=kind, name=job_name("churn", '["retrain_churn", "manual__1", "train", -1]'),
        namespace="ml", image="registry.local/mlops:1", nodes=nodes, procs_per_node=2, gpus=gpus,
        cpus=4, max_restarts=2, secret="mlops-credentials", labels={manifests.LABEL_PIPELINE: "churn"},
    )  # fmt: skip
    return ClusterJob(**{**values, **extra})


def _env(container_env: list[dict[str, Any]]) -> dict[str, Any]:
    return {item["name"]: item.get("value", item.get("valueFrom")) for item in container_env}


@pytest.mark.parametrize("kind", manifests.KINDS)
@pytest.mark.parametrize("nodes", [1, 2])
@pytest.mark.parametrize("gpus", [0, 1])
def test_every_manifest_is_valid_against_its_crd(kind: str, nodes: int, gpus: int):
    extra = {"service_account": "trainer", "node_selector": {"gpu": "a100"}} if gpus else {}
    body = manifest(_job(kind, nodes, gpus, **extra), SPEC, {"MLFLOW_TRACKING_URI": "http://mlflow:5000"})
    assert _errors(kind, body) == []
    assert RFC1035.match(body["metadata"]["name"]) and len(body["metadata"]["name"]) <= 63


def test_trainjob_carries_nodes_processes_gpus_cpus_and_restarts():
    body = manifest(_job("TrainJob", 2, 1, node_selector={"gpu": "a100"}), SPEC, {})
    trainer = body["spec"]["trainer"]
    assert body["apiVersion"] == "trainer.kubeflow.org/v1alpha1" and body["spec"]["runtimeRef"] == {
        "name": "torch-distributed"
    }
    assert (trainer["numNodes"], trainer["numProcPerNode"]) == (2, 2)
    assert trainer["resourcesPerNode"]["limits"] == {"nvidia.com/gpu": 2, "cpu": "8"}
    assert trainer["command"] == ["python", "-m", "airflow_mlops_provider.core.training.kubernetes.entry"]
    payload = json.loads(_env(trainer["env"])[manifests.SPEC_ENV])
    assert payload == {**SPEC, "max_restarts": 2}  # no restart field in a TrainJob: torchrun restarts
    (patch,) = body["spec"]["runtimePatches"]
    (node,) = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    assert node["name"] == "node" and node["template"]["spec"]["template"]["spec"] == {
        "nodeSelector": {"gpu": "a100"}
    }


def test_pytorchjob_has_a_master_and_workers_named_pytorch_with_restarts_as_backoff():
    body = manifest(_job("PyTorchJob", 3, 1), SPEC, {})
    spec = body["spec"]
    replicas = spec["pytorchReplicaSpecs"]
    assert (replicas["Master"]["replicas"], replicas["Worker"]["replicas"]) == (1, 2)
    assert spec["runPolicy"]["backoffLimit"] == 2 and replicas["Master"]["restartPolicy"] == "OnFailure"
    assert spec["nprocPerNode"] == "2"
    for replica in replicas.values():
        (container,) = replica["template"]["spec"]["containers"]
        assert container["name"] == "pytorch"
        assert container["resources"]["limits"] == {"nvidia.com/gpu": 2, "cpu": "8"}
        assert json.loads(_env(container["env"])[manifests.SPEC_ENV])["max_restarts"] == 0
    one = manifest(_job("PyTorchJob", 1, 0, max_restarts=0), SPEC, {})["spec"]
    assert "Worker" not in one["pytorchReplicaSpecs"]
    assert one["pytorchReplicaSpecs"]["Master"]["restartPolicy"] == "Never"
    assert "resources" in one["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]  # cpus


def test_no_gpu_and_no_cpu_asks_for_no_resources():
    body = manifest(_job("TrainJob", 1, 0, cpus=None), SPEC, {})
    assert "resourcesPerNode" not in body["spec"]["trainer"]


def test_validation_catches_a_wrong_field_a_wrong_type_and_a_missing_one():
    good = manifest(_job("TrainJob", 2, 1), SPEC, {})
    wrong_field = copy.deepcopy(good)
    wrong_field["spec"]["trainer"]["numProcsPerNode"] = 2  # typo of numProcPerNode
    assert any("numProcsPerNode" in e for e in _errors("TrainJob", wrong_field))
    wrong_type = copy.deepcopy(good)
    wrong_type["spec"]["trainer"]["numNodes"] = "2"
    assert any("spec/trainer/numNodes" in e for e in _errors("TrainJob", wrong_type))
    missing = copy.deepcopy(good)
    del missing["spec"]["runtimeRef"]
    assert any("runtimeRef" in e for e in _errors("TrainJob", missing))
    pytorch = manifest(_job("PyTorchJob", 2, 0), SPEC, {})
    pytorch["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]["gpus"] = 1
    assert any("gpus" in e for e in _errors("PyTorchJob", pytorch))


def test_names_are_stable_rfc1035_labels_per_task_instance():
    key = '["retrain_churn", "scheduled__2026-01-01", "train", 3]'
    assert job_name("churn", key) == job_name("churn", key)
    assert job_name("churn", key) != job_name("churn", key.replace("3]", "4]"))
    for pipeline in ("Churn_Model_" + "x" * 80, "9lives", "___"):
        name = job_name(pipeline, key)
        assert RFC1035.match(name) and len(name) <= 63, name


def test_credentials_never_enter_the_manifest():
    tracking = {
        "MLFLOW_TRACKING_URI": "https://alice:s3cret@mlflow.example:5000",
        "MLFLOW_TRACKING_PASSWORD": "s3cret",
        "MLFLOW_TRACKING_USERNAME": "alice",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
    }
    storage = {
        "key": "AKIA-TEST",
        "secret": "aws-s3cret",
        "token": "tok",
        "endpoint_url": "http://minio:9000",
    }
    for kind in manifests.KINDS:
        body = manifest(_job(kind, 2, 0), SPEC, plain_env(tracking, storage))
        text = json.dumps(body)
        assert not any(secret in text for secret in ("s3cret", "AKIA-TEST", 'tok"', "alice"))
        container = (
            body["spec"]["trainer"]
            if kind == "TrainJob"
            else (body["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0])
        )
        env = _env(container["env"])
        assert env["MLFLOW_TRACKING_URI"] == "https://mlflow.example:5000"
        assert json.loads(env["MLOPS_STORAGE_OPTIONS"]) == {"endpoint_url": "http://minio:9000"}
        assert env["AWS_SECRET_ACCESS_KEY"] == {
            "secretKeyRef": {"name": "mlops-credentials", "key": "AWS_SECRET_ACCESS_KEY", "optional": True}
        }
        assert env["MLFLOW_TRACKING_PASSWORD"]["secretKeyRef"]["name"] == "mlops-credentials"


def test_user_env_wins_over_ours_but_not_over_the_spec():
    job = _job(
        "TrainJob", 1, 0, env={"MLFLOW_TRACKING_URI": "http://mlflow.ml.svc:5000", manifests.SPEC_ENV: "x"}
    )
    env = _env(
        manifest(job, SPEC, {"MLFLOW_TRACKING_URI": "http://localhost:5000"})["spec"]["trainer"]["env"]
    )
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow.ml.svc:5000"
    assert json.loads(env[manifests.SPEC_ENV])["entry_point"] == "pkg.mod:train"


# --- status -> outcome, on statuses shaped as the CRDs define them ------------------------------------


def _condition(kind: str, reason: str = "", message: str = "", when: str = "2026-01-01T00:00:00Z") -> dict:
    return {"type": kind, "status": "True", "reason": reason, "message": message, "lastTransitionTime": when}


def _object(kind: str, *conditions: dict) -> dict:
    body = manifest(_job(kind, 2, 0), SPEC, {})
    body["status"] = {"conditions": list(conditions)}
    assert _errors(kind, body) == [], "the test's status must be one the CRD allows"
    return body


@pytest.mark.parametrize(
    ("kind", "conditions", "expected"),
    [
        ("TrainJob", [], ("running", "Pending")),
        ("TrainJob", [_condition("Complete", "JobsCompleted", "jobs done")], ("complete", "JobsCompleted")),
        ("TrainJob", [_condition("Failed", "FailedJobs", "node-0 OOMKilled")], ("failed", "FailedJobs")),
        ("TrainJob", [_condition("Suspended", "Suspended", "queued by Kueue")], ("suspended", "Suspended")),
        ("PyTorchJob", [_condition("Created", "PyTorchJobCreated")], ("running", "PyTorchJobCreated")),
        (
            "PyTorchJob",
            [
                _condition("Created", "PyTorchJobCreated", when="2026-01-01T00:00:00Z"),
                _condition("Restarting", "PyTorchJobRestarting", "pod restarted", "2026-01-01T00:05:00Z"),
            ],
            ("running", "PyTorchJobRestarting"),
        ),
        (
            "PyTorchJob",
            [_condition("Running", "PyTorchJobRunning"), _condition("Succeeded", "PyTorchJobSucceeded")],
            ("complete", "PyTorchJobSucceeded"),
        ),
        (
            "PyTorchJob",
            [_condition("Failed", "PyTorchJobFailed", "backoff exceeded")],
            ("failed", "PyTorchJobFailed"),
        ),
    ],
)
def test_status_maps_to_an_outcome(kind: str, conditions: list[dict], expected: tuple[str, str]):
    state = status.job_state(kind, _object(kind, *conditions))
    assert (state.phase, state.reason) == expected
    assert state.finished == (expected[0] in ("complete", "failed"))


def test_a_false_final_condition_is_not_an_outcome_and_messages_are_kept():
    done = _condition("Complete", "JobsCompleted")
    done["status"] = "False"
    assert status.job_state("TrainJob", _object("TrainJob", done)).phase == "running"
    failed = status.job_state(
        "TrainJob", _object("TrainJob", _condition("Failed", "FailedJobs", "OOMKilled"))
    )
    assert failed.message == "OOMKilled"


def test_rank0_pods_and_restarts():
    trainjob_pod = {"metadata": {"labels": {"batch.kubernetes.io/job-completion-index": "0",
                                            "jobset.sigs.k8s.io/job-index": "0"}}}  # fmt: skip
    other = {"metadata": {"labels": {"batch.kubernetes.io/job-completion-index": "1"}}}
    assert status.is_rank0("TrainJob", trainjob_pod) and not status.is_rank0("TrainJob", other)
    master = {"metadata": {"labels": {"training.kubeflow.org/replica-type": "master",
                                      "training.kubeflow.org/replica-index": "0"}}}  # fmt: skip
    worker = {"metadata": {"labels": {"training.kubeflow.org/replica-type": "worker",
                                      "training.kubeflow.org/replica-index": "0"}}}  # fmt: skip
    assert status.is_rank0("PyTorchJob", master) and not status.is_rank0("PyTorchJob", worker)
    pods = [{"status": {"containerStatuses": [{"restartCount": 2}]}}, {"status": {}}]
    assert status.restarts(pods) == 2
