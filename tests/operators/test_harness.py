"""The dag.test() harness itself runs a real DAG file and reads back states and XCom."""

from __future__ import annotations


def test_harness_runs_a_dag_file_and_reads_xcom(dags):
    run = dags.run(
        """
        from airflow.sdk import DAG, task

        with DAG("harness_smoke", schedule=None) as dag:
            @task
            def answer():
                return {"value": 42}

            answer()
        """,
        "harness_smoke",
    )
    assert str(run.state) == "success"
    assert dags.task_states(run) == {"answer": "success"}
    assert dags.xcom(run, "answer") == {"value": 42}
