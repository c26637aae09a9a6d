"""Apache Airflow 3 provider for a production ML retraining loop.

Importing this package (or its operators, hooks and factory) pulls in only the stdlib,
pydantic and ``airflow.sdk``: heavy libraries load inside ``execute()`` (DESIGN.md rule 1).
"""

__version__ = "0.1.0"
