# MLflow tracking server with the PostgreSQL driver and S3 (MinIO) artifact support.
FROM ghcr.io/mlflow/mlflow:v3.17.2
RUN pip install --no-cache-dir "psycopg2-binary==2.9.13" "boto3==1.43.117"
