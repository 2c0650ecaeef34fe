"""Celery tasks: take ids, call one service."""

from __future__ import annotations

from celery import shared_task

from orchestration.services.actors import worker_actor
from orchestration.services.execution import task_run
from orchestration.services.sweeper import tasks_sweep


@shared_task(name="orchestration.tasks.run_task")
def run_task(task_id: str) -> None:
    task_run(task_id=task_id, worker=worker_actor())


@shared_task(name="orchestration.tasks.sweep_due_tasks")
def sweep_due_tasks() -> int:
    return tasks_sweep()
