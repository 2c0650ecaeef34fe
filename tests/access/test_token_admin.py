"""API tokens in the admin: issued with the key shown once (never stored), rotated, revoked, never deleted; a
platform engineer may manage them, an operator may not see them."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import Group, User
from django.contrib.messages import get_messages
from django.test import Client
from rest_framework.test import APIClient

from access.models import ApiToken, token_digest
from access.services import token_issue

pytestmark = pytest.mark.django_db
CHANGELIST = "/admin/access/apitoken/"
KEY = re.compile(r"aop_[A-Za-z0-9_-]{43}")


def _shown_keys(response: object) -> list[str]:
    return [match for message in get_messages(response.wsgi_request) for match in KEY.findall(str(message))]  # type: ignore[attr-defined]


def test_adding_a_token_shows_its_key_once_and_stores_only_the_digest(operator: Client) -> None:
    client_user = User.objects.create(username="svc")
    response = operator.post(
        f"{CHANGELIST}add/",
        {"user": client_user.pk, "name": "billing service", "scopes": ["tasks:submit", "tasks:read"]},
        follow=True,
    )
    assert response.status_code == 200
    [key] = _shown_keys(response)
    token = ApiToken.objects.get(name="billing service")
    assert token.digest == token_digest(key) and sorted(token.scopes) == ["tasks:read", "tasks:submit"]
    assert token.created_by is not None and token.created_by.username == "ops"
    assert key not in operator.get(f"{CHANGELIST}{token.pk}/change/").content.decode()
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    assert api.get("/api/v1/tasks/").status_code == 200


def test_an_unknown_scope_is_a_form_error(operator: Client) -> None:
    response = operator.post(
        f"{CHANGELIST}add/", {"user": User.objects.create(username="x").pk, "name": "n", "scopes": ["all"]}
    )
    assert response.status_code == 200 and "Select a valid choice" in response.content.decode()
    assert not ApiToken.objects.exists()


def test_rotate_and_revoke_actions(operator: Client) -> None:
    issued = token_issue(user=User.objects.create(username="svc"), name="svc", scopes=["tasks:read"])
    rotated = operator.post(CHANGELIST, {"action": "rotate_tokens", "_selected_action": [issued.token.pk]}, follow=True)
    [new_key] = _shown_keys(rotated)
    new = ApiToken.objects.get(digest=token_digest(new_key))
    operator.post(CHANGELIST, {"action": "revoke_tokens", "_selected_action": [new.pk]})
    new.refresh_from_db()
    assert new.revoked_at is not None and "revoked in the admin by ops" in new.revoked_reason
    assert operator.get(f"{CHANGELIST}{new.pk}/delete/").status_code == 403


def test_engineers_manage_tokens_and_operators_do_not_see_them(queue_groups: None) -> None:
    engineer = User.objects.create_user("eng", password="unused-password-1", is_staff=True)
    engineer.groups.add(Group.objects.get(name="platform engineers"))
    operator = User.objects.create_user("op", password="unused-password-1", is_staff=True)
    operator.groups.add(Group.objects.get(name="operators"))
    as_engineer, as_operator = Client(), Client()
    as_engineer.force_login(engineer)
    as_operator.force_login(operator)
    assert as_engineer.get(f"{CHANGELIST}add/").status_code == 200
    assert as_operator.get(CHANGELIST).status_code == 403


def test_a_tokens_scopes_and_expiry_can_be_changed_but_not_its_owner(operator: Client) -> None:
    owner, other = User.objects.create(username="svc"), User.objects.create(username="someone-else")
    issued = token_issue(user=owner, name="svc", scopes=["tasks:read"])
    change = f"{CHANGELIST}{issued.token.pk}/change/"
    form = {"user": other.pk, "name": "svc", "scopes": ["tasks:read", "tasks:cancel"], "expires_at_0": "2030-01-01"}
    form["expires_at_1"] = "00:00:00"
    assert operator.post(change, form).status_code == 302
    issued.token.refresh_from_db()
    assert sorted(issued.token.scopes) == ["tasks:cancel", "tasks:read"]
    assert issued.token.expires_at is not None and issued.token.expires_at.year == 2030
    assert issued.token.user == owner  # read-only once issued
