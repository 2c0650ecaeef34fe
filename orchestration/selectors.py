"""Reads of tasks, scoped to who is asking."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet

from orchestration.models import Task


def tasks_visible_to(user: AbstractBaseUser) -> QuerySet[Task]:
    """A client sees its own tasks; staff see all."""
    tasks = Task.objects.all()
    return tasks if getattr(user, "is_staff", False) else tasks.filter(owner=user)


def task_detail_queryset(user: AbstractBaseUser) -> QuerySet[Task]:
    return tasks_visible_to(user).prefetch_related("steps", "transitions")
