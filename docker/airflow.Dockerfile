# Airflow 3.3 with this provider installed, for docker-compose.yaml.
FROM apache/airflow:3.3.2-python3.11

USER airflow
COPY --chown=airflow:root constraints.txt pyproject.toml README.md /opt/mlops-provider/
COPY --chown=airflow:root airflow_mlops_provider /opt/mlops-provider/airflow_mlops_provider
# The CPU build of torch keeps the image small; the constraints pin every other package.
RUN pip install --no-cache-dir "torch==2.13.0" --index-url https://download.pytorch.org/whl/cpu \
 && pip install --no-cache-dir -c /opt/mlops-provider/constraints.txt /opt/mlops-provider
# The shared logs volume takes this folder's owner on first use: the airflow user.
RUN mkdir -p /opt/airflow/logs
COPY --chown=airflow:root scripts/seed_stack.py /opt/mlops-provider/scripts/seed_stack.py
COPY --chown=airflow:root dags /opt/airflow/dags
