"""The provider's pages inside the Airflow UI: a Models page and a tab on each pipeline's DAGs.

Served by a FastAPI app the api-server mounts (:mod:`.app`), reached through the plugin's
``external_views`` (:mod:`airflow_mlops_provider.plugins`). Imported only by the api-server.
"""
