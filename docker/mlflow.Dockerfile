# MLflow tracking server with the PostgreSQL driver and S3 (MinIO) artifact support.
FROM ghcr.io/mlflow/mlflow:v3.17.2
# Flask-WTF: what `mlflow[auth]` adds for the basic-auth app (CSRF); the image lacks it.
RUN pip install --no-cache-dir "psycopg2-binary==2.9.13" "boto3==1.43.117" "Flask-WTF==1.2.2"
# The basic-auth user store (docker/mlflow-basic-auth.ini) lives on a volume mounted here.
RUN mkdir -p /var/lib/mlflow-auth
