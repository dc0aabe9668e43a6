"""The JSON schema of ``cluster.yaml`` (for editors and for ``check-jsonschema``)."""

from __future__ import annotations

import json
from typing import Any

from .topology import Cluster

SCHEMA_FILE = "cluster.schema.json"
SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def cluster_json_schema() -> dict[str, Any]:
    """The schema as a dict."""
    schema = Cluster.model_json_schema()
    return {**schema, "$schema": SCHEMA_DIALECT, "title": "distproc cluster.yaml"}


def cluster_json_schema_text() -> str:
    """The schema as stable, pretty JSON text (sorted keys, trailing newline)."""
    return json.dumps(cluster_json_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
