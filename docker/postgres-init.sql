-- MLflow's backend store lives beside Airflow's metadata DB, in its own database and role.
CREATE ROLE mlflow LOGIN PASSWORD 'mlflow';
CREATE DATABASE mlflow OWNER mlflow;
