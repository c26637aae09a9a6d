"""Run the demo on the embedded default: SQLite metadata DB, SQLite MLflow store, local artifacts.

Everything lands under ``.demo/`` in the repository; delete it to start over.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / ".demo"


def embedded_environment() -> dict[str, str]:
    """Environment of the embedded default stack; set before Airflow is imported."""
    airflow_home = DEMO / "airflow"
    return {
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{airflow_home}/airflow.db",
        "AIRFLOW_CONN_MLFLOW_DEFAULT": json.dumps(
            {"conn_type": "mlflow", "host": f"sqlite:///{DEMO}/mlflow.db"}
        ),
        "MLFLOW_ARTIFACTS_DESTINATION": (DEMO / "mlartifacts").as_uri(),
        "MLOPS_ARTIFACT_ROOT": (DEMO / "artifacts").as_uri(),
        "MLOPS_DATA_ROOT": (DEMO / "data").as_uri(),
        "GIT_PYTHON_REFRESH": "quiet",
    }


def main() -> int:
    (DEMO / "airflow").mkdir(parents=True, exist_ok=True)
    os.environ.update(embedded_environment())
    airflow = Path(sys.executable).parent / "airflow"
    subprocess.run([str(airflow), "db", "migrate"], check=True, stdout=subprocess.DEVNULL)

    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags"))
    if bag.import_errors:
        for path, error in bag.import_errors.items():
            print(f"Import error in {path}:\n{error}", file=sys.stderr)
        return 1
    dag = bag.get_dag("mlops_smoke")
    run = dag.test()
    print(f"\nDAG {dag.dag_id}: run {run.run_id} finished {run.state}")
    return 0 if str(run.state) == "success" else 1


if __name__ == "__main__":
    sys.exit(main())
