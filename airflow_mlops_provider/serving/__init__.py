"""The prediction service: registered models behind their aliases over HTTP (issue 16).

``slot`` follows an alias in the registry and swaps models atomically, ``schema`` turns JSON rows
into the table batch scoring reads, ``app`` is the FastAPI app and ``__main__`` the ``mlops-serve``
command. Imports ``core`` only, never Airflow.
"""
