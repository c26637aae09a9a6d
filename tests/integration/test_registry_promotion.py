"""Evaluation, gate, registration, promotion and rollback against a real ``mlflow server`` (PostgreSQL).

The models are real TabularModels logged with ``model_io.log_model``: a baseline, a strictly
better and a strictly worse one (trained on cleaner or noisier labels), evaluated on one
held-out snapshot split.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from airflow_mlops_provider.core import registry
from airflow_mlops_provider.core.decision_record import load_record
from airflow_mlops_provider.core.evaluation import EvaluationError, evaluate_challenger_and_champion
from airflow_mlops_provider.core.model_io import load_model
from airflow_mlops_provider.core.promotion import (
    PromotionRefused,
    gate_and_register,
    promote,
    rollback_champion,
)
from airflow_mlops_provider.core.tracking import TrackingSettings
from tests.support.promotion import (
    Models,
    fault_proxy,
    fit_model,
    log_run,
    make_frame,
    new_model_name,
    shared_models,
)

pytestmark = pytest.mark.integration

GATE = {"thresholds": {"accuracy": 0.6}, "primary_metric": "roc_auc", "max_regression": {"accuracy": 0.05}}


@pytest.fixture(scope="module")
def models(mlflow_server: str, tmp_path_factory: pytest.TempPathFactory) -> Models:
    return shared_models(mlflow_server, tmp_path_factory.getbasetemp() / "promotion-snapshots")


def evaluate(models: Models, run_id: str, name: str, settings: TrackingSettings | None = None) -> dict:
    return evaluate_challenger_and_champion(
        challenger=models.challenger(run_id), snapshot=models.snapshot, model_name=name,
        settings=settings or models.settings, split="test", slices=["region"],
    )  # fmt: skip


def gate_then_promote(
    models: Models, run_id: str, name: str, gate: dict | None = None
) -> tuple[dict, dict | None]:
    decision = gate_and_register(
        models.settings, evaluate(models, run_id, name), gate or GATE, pipeline="promo",
        trigger={"cause": "new_data", "snapshot": {"sha256": "ab" * 32}},
    )  # fmt: skip
    if decision["verdict"] != "pass":
        return decision, None
    return decision, promote(models.settings, decision)


def versions(settings: TrackingSettings, name: str) -> list[str]:
    return sorted(v.version for v in settings.client().search_model_versions(f"name = '{name}'"))


def test_first_promotion_better_promoted_worse_rejected(models: Models):
    name, client = new_model_name(), models.settings.client()

    first, done = gate_then_promote(models, models.baseline, name)
    assert first["verdict"] == "pass" and first["champion_version_at_eval"] is None
    assert first["reasons"] == ["first model of this pipeline: absolute thresholds met (accuracy)"]
    assert done["promoted"] and registry.aliases(client, name) == {"champion": "1", "challenger": "1"}

    better, done = gate_then_promote(models, models.better, name)
    assert better["verdict"] == "pass" and better["champion_version_at_eval"] == "1"
    assert done["alias_changes"][-1] == {
        **done["alias_changes"][-1],
        "alias": "champion",
        "before": "1",
        "after": "2",
    }
    assert registry.aliases(client, name) == {"champion": "2", "previous_champion": "1", "challenger": "2"}

    worse, done = gate_then_promote(models, models.worse, name)
    assert done is None and worse["verdict"] == "fail"
    assert any("roc_auc" in r and "below the minimum gain" in r for r in worse["reasons"]), worse["reasons"]
    assert registry.aliases(client, name) == {"champion": "2", "previous_champion": "1", "challenger": "3"}
    with pytest.raises(PromotionRefused, match="the gate said 'fail'"):
        promote(models.settings, worse)
    assert registry.alias_number(client, name, "champion") == "2"

    # The record: stored as an artifact of the run, summarised in tags on the version.
    record = record_of(client, models.worse, name)
    assert record.verdict == "fail" and record.status == "rejected" and record.version == "3"
    assert record.champion["version"] == "2" and record.trigger["cause"] == "new_data"
    assert set(record.challenger["slices"]["region"]) == {"apac", "eu", "us"}
    assert record.training_snapshot["sha256"] == "feed" * 16
    tags = client.get_model_version(name, "3").tags
    assert tags["mlops.verdict"] == "fail" and tags["mlops.source_run_id"] == models.worse
    assert tags["mlops.decision_record_uri"].endswith(f"decision_record/{name}/decision.json")
    assert tags["mlops.pipeline"] == "promo" and tags["mlops.trigger_cause"] == "new_data"
    promoted = record_of(client, models.better, name)
    assert promoted.status == "promoted" and promoted.previous_champion == "1"
    assert [c["alias"] for c in promoted.alias_changes] == ["previous_champion", "champion"]
    assert client.get_model_version(name, "2").tags["mlops.previous_champion_version"] == "1"
    html = Path(
        client.download_artifacts(models.better, f"decision_record/{name}/decision.html", str(_tmp()))
    ).read_text()
    assert "PASS" in html and name in html


def record_of(client, run_id: str, name: str):
    return load_record(client, client.get_run(run_id).info.artifact_uri, name)


def _tmp() -> Path:
    import tempfile

    return Path(tempfile.mkdtemp())


def test_retry_registers_no_second_version_and_leaves_aliases_as_they_were(models: Models):
    name, client = new_model_name(), models.settings.client()
    gate_then_promote(models, models.baseline, name)
    decision, _ = gate_then_promote(models, models.better, name)
    before = (versions(models.settings, name), registry.aliases(client, name))

    # The gate task retried with the same evaluation, then the promotion task retried.
    again = gate_and_register(models.settings, evaluate(models, models.better, name), GATE, pipeline="promo")
    assert again["version"] == decision["version"] and again["status"] == "promoted"
    redo = promote(models.settings, decision)
    assert redo["promoted"] and redo["alias_changes"] == []
    # The whole run again: evaluation now sees itself as champion.
    gate_then_promote(models, models.better, name, {**GATE, "min_gain": 0.05})
    assert (versions(models.settings, name), registry.aliases(client, name)) == before


def test_lost_response_duplicate_registration_is_avoided_by_tag_lookup(models: Models, mlflow_server: str):
    name = new_model_name()
    lost: list[str] = []

    def lose_first_create(method: str, path: str, body: bytes) -> str | None:
        if path.endswith("/model-versions/create") and not lost:
            lost.append(path)
            return "drop"  # the server registers the version, the client never hears back
        return None

    with fault_proxy(mlflow_server) as proxy:
        proxy.rule = lose_first_create
        # MLflow's client retries the POST itself: without the lookup that makes a second version.
        flaky = TrackingSettings(tracking_uri=proxy.url, max_retries=2, request_timeout_s=10)
        first = registry.register_version(flaky.client(), name, models.baseline)
    assert lost and first.version == "1"
    assert versions(models.settings, name) == ["1"]

    # Without client retries the task fails clearly; its retry finds the version by its tag.
    name = new_model_name()
    lost.clear()
    with fault_proxy(mlflow_server) as proxy:
        proxy.rule = lose_first_create
        flaky = TrackingSettings(tracking_uri=proxy.url, max_retries=0, request_timeout_s=10)
        with pytest.raises(registry.RegistryUnavailable, match="failed while registering run"):
            registry.register_version(flaky.client(), name, models.baseline)
    assert versions(models.settings, name) == ["1"]  # the lost request did register it
    retried = registry.register_version(models.settings.client(), name, models.baseline)
    assert (retried.version, retried.created) == ("1", False)
    assert versions(models.settings, name) == ["1"]


def _logged_model_dir(settings: TrackingSettings, run_id: str, artifacts_root: Path) -> Path:
    client = settings.client()
    run = client.get_run(run_id)
    [logged] = client.search_logged_models(
        experiment_ids=[run.info.experiment_id], filter_string=f"source_run_id = '{run_id}'"
    )
    return artifacts_root / logged.artifact_location.split("mlflow-artifacts:/", 1)[1].lstrip("/")


def test_missing_artifacts_are_never_aliased(models: Models, session_dir: Path, tmp_path: Path):
    settings, name = models.settings, new_model_name()
    gate_then_promote(models, models.baseline, name)
    train = make_frame(200, seed=5)
    run_id = log_run(settings, "promotion-broken", fit_model(train, 0.0, seed=9), train)
    evaluation = evaluate(models, run_id, name)
    weights = next(
        _logged_model_dir(settings, run_id, session_dir / "mlflow-artifacts").rglob("model.safetensors")
    )
    shutil.move(weights, tmp_path / "weights")  # READY in the registry, but half its files are gone

    with pytest.raises(registry.ArtifactVerificationError, match=r"models:/.*/2: the model's artifacts"):
        gate_and_register(settings, evaluation, GATE)
    client = settings.client()
    assert registry.aliases(client, name) == {"champion": "1", "challenger": "1"}
    assert client.get_model_version(name, "2").status == "READY"  # what MLflow alone would trust

    # Artifacts back: the gate's retry registers nothing new; then they vanish before the promotion.
    shutil.move(tmp_path / "weights", weights)
    decision = gate_and_register(settings, evaluation, GATE)
    assert decision["version"] == "2" and decision["verdict"] == "pass"
    shutil.move(weights, tmp_path / "weights")
    with pytest.raises(registry.ArtifactVerificationError, match="no alias was pointed at it"):
        promote(settings, decision)
    assert registry.alias_number(client, name, "champion") == "1"
    shutil.move(tmp_path / "weights", weights)
    assert promote(settings, decision)["promoted"]
    assert versions(settings, name) == ["1", "2"]

    # A champion whose files vanished cannot be evaluated against: named, not a stack of HTTP errors.
    shutil.move(weights, tmp_path / "weights")
    try:
        with pytest.raises(EvaluationError, match=rf"champion {name} v2 cannot be loaded"):
            evaluate(models, models.better, name)
    finally:
        shutil.move(tmp_path / "weights", weights)


def test_nan_metrics_are_rejected_with_a_reason(models: Models):
    import torch

    settings, name = models.settings, new_model_name()
    train = make_frame(200, seed=6)
    broken = fit_model(train, 0.0, steps=1)
    with torch.no_grad():
        for param in broken.network.parameters():
            param.fill_(float("nan"))
    run_id = log_run(settings, "promotion-nan", broken, train)
    evaluation = evaluate(models, run_id, name)
    assert evaluation["challenger"]["metrics"]["roc_auc"] is None  # NaN never reaches JSON
    decision = gate_and_register(settings, evaluation, GATE)
    assert decision["verdict"] == "fail"
    assert decision["reasons"][0].startswith("challenger metric 'roc_auc' is NaN or missing")
    assert registry.alias_number(settings.client(), name, "champion") is None
    json.dumps(decision, allow_nan=False)


def test_rollback_restores_the_previous_champion_and_records_why(models: Models):
    settings, name = models.settings, new_model_name()
    client = settings.client()
    for run_id in (models.baseline, models.better):
        decision, done = gate_then_promote(models, run_id, name)
        assert done is not None and done["promoted"], decision
    better_decision = decision
    assert registry.aliases(client, name)["champion"] == "2"

    done = rollback_champion(
        settings, name, reason="latency regression in prod", request_id="dag-run-1", actor="ops"
    )
    assert (done["from_version"], done["to_version"], done["repeated"]) == ("2", "1", False)
    assert registry.aliases(client, name) == {"champion": "1", "challenger": "2"}
    note = json.loads(client.get_model_version(name, "2").tags["mlops.rolled_back"])
    assert note["reason"] == "latency regression in prod" and note["actor"] == "ops"
    last = json.loads(client.get_registered_model(name).tags["mlops.last_rollback"])
    assert last["request_id"] == "dag-run-1"

    # Clearing the old promotion task must not undo the rollback.
    with pytest.raises(PromotionRefused, match=r"v2 was rolled back .*latency regression in prod"):
        promote(settings, better_decision)
    again = rollback_champion(settings, name, reason="latency regression in prod", request_id="dag-run-1")
    assert again["repeated"] and registry.alias_number(client, name, "champion") == "1"
    with pytest.raises(registry.RollbackRefused, match="has no 'previous_champion' alias"):
        rollback_champion(settings, name, reason="again", request_id="dag-run-2")
    with pytest.raises(registry.RollbackRefused, match="needs a reason"):
        rollback_champion(settings, name, reason=" ", request_id="dag-run-3")


def test_alias_overwritten_by_another_writer_is_detected(models: Models):
    """MLflow has no compare-and-set: the re-read after setting catches a concurrent writer."""
    from mlflow import MlflowClient

    settings, name = models.settings, new_model_name()
    gate_then_promote(models, models.baseline, name)
    decision = gate_and_register(settings, evaluate(models, models.better, name), GATE)
    other = settings.client()

    class RacedClient(MlflowClient):
        def set_registered_model_alias(self, model_name, alias, version):
            super().set_registered_model_alias(model_name, alias, version)
            if alias == "champion":  # someone outside the pool (a UI click, a script) writes in between
                other.set_registered_model_alias(model_name, "champion", "1")

    raced = RacedClient(tracking_uri=settings.tracking_uri)
    with pytest.raises(registry.AliasConflict, match="another writer changed it concurrently"):
        registry.move_champion(
            raced, name, decision["version"], expected_champion="1", verify=lambda uri: None
        )


def test_promotion_refuses_when_champion_moved_and_reevaluation_is_off(models: Models):
    settings, name = models.settings, new_model_name()
    gate_then_promote(models, models.baseline, name)
    lenient = {"thresholds": {"accuracy": 0.6}, "min_gain": -1, "max_regression": {"accuracy": 1}}
    slow = gate_and_register(settings, evaluate(models, models.worse, name), lenient)
    assert slow["verdict"] == "pass" and slow["champion_version_at_eval"] == "1"
    gate_then_promote(models, models.better, name)  # another run promoted version 3 meanwhile
    with pytest.raises(
        PromotionRefused, match="it was version 1 and is now version 3; re-run the evaluation"
    ):
        promote(settings, slow, reevaluate=False)
    assert registry.alias_number(settings.client(), name, "champion") == "3"
    assert record_of(settings.client(), models.worse, name).status == "superseded"


def test_loader_reads_what_was_promoted(models: Models):
    name = new_model_name()
    gate_then_promote(models, models.better, name)
    model = load_model(f"models:/{name}@champion", models.settings)
    assert model.task == "classification" and model.target == "y"
