"""Extra links whose URL the operator decides during ``execute()``.

In Airflow 3 the worker calls ``get_link()`` right after ``execute()`` and stores the URL; the
operator therefore pushes the URL to XCom under the link's ``source_key`` (see :meth:`persist`)
and the link reads it back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk import BaseOperatorLink
from airflow.sdk.execution_time.xcom import XCom

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey


class XComUrlLink(BaseOperatorLink):
    """A link whose URL the operator pushed to XCom under :attr:`source_key`."""

    source_key: ClassVar[str]

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        return XCom.get_value(key=self.source_key, ti_key=ti_key) or ""

    @classmethod
    def persist(cls, context: Any, url: str | None) -> None:
        """Record ``url`` for this link on the running task instance.

        An empty value is recorded when there is no URL (a local MLflow store has no UI), so the
        worker's lookup after ``execute()`` finds an answer instead of logging a missing XCom.
        """
        context["ti"].xcom_push(key=cls.source_key, value=url or "")
