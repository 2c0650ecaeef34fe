"""API tokens: stored as digests only, scoped, expiring, revocable, rotated with an overlap; a client's token reaches
its own tasks only and never the admin."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group, User
from django.utils import timezone
from rest_framework.test import APIClient

from access.models import ApiToken, token_digest
from access.scopes import Scope
from access.services import LAST_USED_RESOLUTION, TokenInvalid, token_issue, token_revoke, token_rotate
from orchestration.models import Task
from tests.factories import api_key, every_scope, submit_task

TASKS = "/api/v1/tasks/"
BODY = {"goal": "Look up order A-1001", "input": {"order_number": "A-1001"}}


def _client(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


@pytest.mark.django_db
def test_only_the_digest_is_stored() -> None:
    issued = token_issue(user=User.objects.create(username="c"), name="svc", scopes=["tasks:read"])
    stored = ApiToken.objects.values().get(pk=issued.token.pk)
    assert issued.key not in str(stored)
    assert stored["digest"] == token_digest(issued.key)
    assert issued.key.startswith(stored["hint"]) and len(stored["hint"]) < 12


@pytest.mark.django_db
def test_a_client_token_submits_and_reads_its_own_tasks_only() -> None:
    mine, theirs = User.objects.create(username="mine"), User.objects.create(username="theirs")
    client = _client(api_key(mine))
    created = client.post(TASKS, BODY, format="json")
    assert created.status_code == 201
    other = submit_task(owner=theirs)
    assert client.get(f"{TASKS}{created.json()['id']}/").status_code == 200
    assert client.get(f"{TASKS}{other.pk}/").status_code == 404
    assert client.post(f"{TASKS}{other.pk}/cancel/").status_code == 404
    assert [task["id"] for task in client.get(TASKS).json()["results"]] == [created.json()["id"]]
    assert Task.objects.get(pk=other.pk).state != "CANCELLED"


@pytest.mark.django_db
def test_a_staff_users_token_keeps_only_what_its_scopes_cover(queue_groups: None) -> None:
    """An operator's token that can only read sees the operator's own tasks, not the whole queue, and cannot act."""
    operator = User.objects.create(username="op", is_staff=True)
    operator.groups.add(*Group.objects.all())
    someone = User.objects.create(username="someone")
    task = submit_task(owner=someone)
    reader = _client(api_key(operator, [Scope.TASKS_READ]))
    assert reader.get(f"{TASKS}{task.pk}/").status_code == 404
    assert reader.get(TASKS).json()["results"] == []
    refused = reader.post(f"{TASKS}{task.pk}/claim/")
    assert refused.status_code == 403 and "queue:work" in refused.json()["error"]["message"]
    worker = _client(api_key(operator, every_scope()))
    assert worker.get(f"{TASKS}{task.pk}/").status_code == 200


@pytest.mark.django_db
def test_a_method_needs_its_scope() -> None:
    client = _client(api_key(User.objects.create(username="r"), [Scope.TASKS_READ]))
    response = client.post(TASKS, BODY, format="json")
    assert response.status_code == 403
    error = response.json()["error"]
    assert error == {"code": "permission_denied", "message": "this token lacks the tasks:submit scope"}
    assert client.get(TASKS).status_code == 200


@pytest.mark.django_db
def test_a_token_never_reaches_the_admin(client_user: User) -> None:
    client_user.is_staff = True
    client_user.save()
    key = api_key(client_user, every_scope())
    response = APIClient().get("/admin/", HTTP_AUTHORIZATION=f"Bearer {key}")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("header", "message"),
    [("Bearer nope", "invalid token"), ("Bearer", "the Authorization header must be 'Bearer <token>'")],
)
def test_a_bad_token_is_a_401_with_a_challenge(header: str, message: str) -> None:
    response = APIClient().get(TASKS, HTTP_AUTHORIZATION=header)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'
    assert response.json()["error"]["message"] == message


@pytest.mark.django_db
def test_expired_and_revoked_tokens_stop_working() -> None:
    user = User.objects.create(username="e")
    expiring = token_issue(user=user, name="e", scopes=["tasks:read"], expires_at=timezone.now() + timedelta(hours=1))
    assert _client(expiring.key).get(TASKS).status_code == 200
    ApiToken.objects.filter(pk=expiring.token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert _client(expiring.key).get(TASKS).json()["error"]["message"] == "token expired"
    revoked = token_issue(user=user, name="r", scopes=["tasks:read"])
    token_revoke(token_id=revoked.token.pk, reason="leaked")
    response = _client(revoked.key).get(TASKS)
    assert response.status_code == 401 and response.json()["error"]["message"] == "token revoked"


@pytest.mark.django_db
def test_an_inactive_users_token_is_refused() -> None:
    user = User.objects.create(username="gone")
    key = api_key(user)
    User.objects.filter(pk=user.pk).update(is_active=False)
    assert _client(key).get(TASKS).status_code == 401


@pytest.mark.django_db
def test_rotation_keeps_the_old_key_for_the_overlap_only(settings: object) -> None:
    user = User.objects.create(username="rot")
    old = token_issue(user=user, name="svc", scopes=["tasks:read", "tasks:submit"], rate_per_minute=7)
    new = token_rotate(token_id=old.token.pk, actor=None)
    assert sorted(new.token.scopes) == ["tasks:read", "tasks:submit"] and new.token.rate_per_minute == 7
    assert _client(old.key).get(TASKS).status_code == 200
    assert _client(new.key).get(TASKS).status_code == 200
    old.token.refresh_from_db()
    assert old.token.replaced_by == new.token
    assert old.token.expires_at is not None and old.token.expires_at <= timezone.now() + timedelta(days=1)
    with pytest.raises(TokenInvalid, match="already rotated"):
        token_rotate(token_id=old.token.pk, actor=None)
    ApiToken.objects.filter(pk=old.token.pk).update(expires_at=timezone.now())
    assert _client(old.key).get(TASKS).status_code == 401
    assert _client(new.key).get(TASKS).status_code == 200


@pytest.mark.django_db
def test_last_used_is_noted_at_most_once_a_minute() -> None:
    issued = token_issue(user=User.objects.create(username="u"), name="u", scopes=["tasks:read"])
    client = _client(issued.key)
    client.get(TASKS)
    first = ApiToken.objects.get(pk=issued.token.pk).last_used_at
    assert first is not None
    client.get(TASKS)
    assert ApiToken.objects.get(pk=issued.token.pk).last_used_at == first
    ApiToken.objects.filter(pk=issued.token.pk).update(last_used_at=first - LAST_USED_RESOLUTION)
    client.get(TASKS)
    again = ApiToken.objects.get(pk=issued.token.pk).last_used_at
    assert again is not None and again > first


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("scopes", "message"),
    [(["tasks:everything"], "unknown scopes: tasks:everything"), ([], "at least one scope")],
)
def test_a_token_with_unknown_or_no_scopes_is_refused(scopes: list[str], message: str) -> None:
    with pytest.raises(TokenInvalid, match=message):
        token_issue(user=User.objects.create(username="s"), name="s", scopes=scopes)


@pytest.mark.django_db
def test_drf_tokens_of_the_previous_release_keep_working_as_digests() -> None:
    """Migration access/0002 turns DRF's plain-text keys into digests and drops the plain-text table."""
    import importlib

    from django.apps import apps
    from django.db import connection

    user = User.objects.create(username="legacy")
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE authtoken_token (key varchar(40) PRIMARY KEY, user_id int, created timestamptz)")
        cursor.execute("INSERT INTO authtoken_token VALUES (%s, %s, now())", ["a" * 40, user.pk])
    migration = importlib.import_module("access.migrations.0002_import_drf_tokens")
    with connection.schema_editor() as editor:
        migration.import_legacy_tokens(apps, editor)
    assert "authtoken_token" not in connection.introspection.table_names()
    response = APIClient().get(TASKS, HTTP_AUTHORIZATION=f"Token {'a' * 40}")
    assert response.status_code == 200
