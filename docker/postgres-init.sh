#!/bin/bash
# MLflow's backend store lives beside Airflow's metadata DB, in its own database and role; the
# role's password comes from .env (MLFLOW_DB_PASSWORD), passed as a psql variable, never inlined.
psql -v ON_ERROR_STOP=1 -v mlflow_password="$MLFLOW_DB_PASSWORD" \
  --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<'SQL'
CREATE ROLE mlflow LOGIN PASSWORD :'mlflow_password';
CREATE DATABASE mlflow OWNER mlflow;
SQL
