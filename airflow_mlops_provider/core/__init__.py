"""The real work, importable without Airflow: snapshots, validation, drift, training, registry."""
