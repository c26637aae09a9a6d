"""Which environment variables a pipeline config may expand, and how their values stay out of the UI.

A pipeline YAML may write ``${NAME}`` or ``${NAME:-default}``. The dag-processor's environment
holds the deployment's secrets (cloud keys, database passwords) and YAML authors are not the
people who set it, so only two kinds of names are expanded:

* names starting with ``MLOPS_``;
* names the deployment lists in ``MLOPS_CONFIG_ENV_ALLOW`` (comma- or space-separated), set in
  the environment of the dag-processor and the workers, never in a YAML file.

Any other ``${NAME}`` is a config error naming the field and the variable, default or not.

An expanded value is never shown as such in a DAG's description, ``doc_md``, a config error or
a build error: each occurrence reads ``${NAME}`` there. A plan that expanded a variable whose
name looks secret (``PASS``, ``SECRET``, ``TOKEN``, ``KEY``, ``CREDENTIAL``, ``AUTH``,
``PRIVATE``) is not written to the plan cache, and its value is registered with Airflow's
secrets masker, which hides it in task logs and rendered template fields.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

PREFIX = "MLOPS_"
ALLOW_VAR = "MLOPS_CONFIG_ENV_ALLOW"
RULE = f"only {PREFIX}* and the names listed in {ALLOW_VAR} are expanded"
_SECRET_NAME = re.compile(r"PASS|SECRET|TOKEN|KEY|CREDENTIAL|AUTH|PRIVATE", re.IGNORECASE)


def allowed(name: str, environ: Mapping[str, str]) -> bool:
    """Whether a pipeline config may expand ``${name}`` in this deployment."""
    return name.startswith(PREFIX) or name in re.split(r"[\s,]+", environ.get(ALLOW_VAR, ""))


def looks_secret(name: str) -> bool:
    return bool(_SECRET_NAME.search(name))


def shown(text: str, values: Mapping[str, str]) -> str:
    """``text`` with every expanded value (also in its repr and JSON spellings) written as ``${NAME}``."""
    forms = {}
    for name, value in values.items():
        if value:
            for form in (value, repr(value)[1:-1], json.dumps(value)[1:-1]):
                forms[form] = f"${{{name}}}"
    if not forms:
        return text
    pattern = re.compile("|".join(map(re.escape, sorted(forms, key=len, reverse=True))))
    return pattern.sub(lambda match: forms[match.group(0)], text)


def register_secrets(values: Mapping[str, str]) -> None:
    """Hand the values of secret-looking variables to Airflow's secrets masker (logs, rendered fields)."""
    secrets = [value for name, value in values.items() if value and looks_secret(name)]
    if secrets:
        from airflow.sdk.log import mask_secret

        for secret in secrets:
            mask_secret(secret)
