"""Model names against a real MLflow server: quoted look-ups under retries, refusals that are final.

Issue 13: a ``'`` in a model name broke the source-run look-up that makes registration idempotent,
so every retry registered another version; and a name MLflow refuses was reported as an outage
that "retrying the task completes".
"""

from __future__ import annotations

import pytest

from airflow_mlops_provider.core import registry
from airflow_mlops_provider.core.tracking import TrackingSettings
from tests.support.promotion import fit_model, log_run, make_frame, new_model_name

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("prefix", ["o'brien", 'the "best" model'])
def test_a_quoted_name_registers_once_across_retries(mlflow_server, prefix):
    settings = TrackingSettings(tracking_uri=mlflow_server)
    client = settings.client()
    train = make_frame(200, seed=3)
    run_id = log_run(settings, "names", fit_model(train, 0.1, steps=5), train)
    name = new_model_name(prefix)
    first = registry.register_version(client, name, run_id)
    retries = [registry.register_version(client, name, run_id) for _ in range(2)]
    assert first.created and not any(r.created for r in retries)
    assert {r.version for r in retries} == {first.version}
    assert registry.find_version_by_source_run(client, name, run_id).version == first.version
    assert [v.version for v in client.search_model_versions(f"name = {registry.filter_value(name)}")] == [
        first.version
    ]


def test_a_name_mlflow_refuses_fails_for_good_not_as_an_outage(mlflow_server):
    client = TrackingSettings(tracking_uri=mlflow_server).client()
    with pytest.raises(registry.RegistryRejected) as err:
        registry.ensure_registered_model(client, "../../escape")
    message = str(err.value)
    assert "refused" in message and "Retrying cannot fix this" in message
    assert "retrying the task completes it" not in message
    assert not isinstance(err.value, registry.RegistryUnavailable)


def test_a_value_no_filter_can_quote_is_refused_by_name():
    with pytest.raises(ValueError, match="both ' and \""):
        registry.filter_value('it\'s "both"')
