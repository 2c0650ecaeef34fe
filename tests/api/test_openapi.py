from __future__ import annotations

import pytest
from django.core.management import call_command
from django.test import Client


def test_schema_validates_without_warnings(tmp_path: object) -> None:
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", f"{tmp_path}/schema.yaml")


@pytest.mark.django_db
def test_schema_and_docs_are_served() -> None:
    client = Client()
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
    spec = schema.json()
    post = spec["paths"]["/api/v1/tasks/"]["post"]
    assert any(p["name"] == "Idempotency-Key" and p["in"] == "header" for p in post["parameters"])
    assert {"201", "200", "400", "422"} <= set(post["responses"])
    docs = client.get("/api/docs/")
    assert docs.status_code == 200 and b"swagger-ui" in docs.content
