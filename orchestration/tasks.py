"""Celery tasks: take ids, call one service."""

from __future__ import annotations

from celery import shared_task

from orchestration.services.actors import worker_actor
from orchestration.services.execution import task_run
from orchestration.services.retention import tasks_prune_scheduled
from orchestration.services.rollouts import rollouts_evaluate
from orchestration.services.sweeper import tasks_sweep
from orchestration.services.webhook_delivery import webhook_deliver, webhooks_deliver_due


@shared_task(name="orchestration.tasks.run_task")
def run_task(task_id: str) -> None:
    task_run(task_id=task_id, worker=worker_actor())


@shared_task(name="orchestration.tasks.sweep_due_tasks")
def sweep_due_tasks() -> int:
    return tasks_sweep()


@shared_task(name="orchestration.tasks.prune_finished_tasks")
def prune_finished_tasks() -> int:
    """Beat's retention run (only scheduled when TASK_RETENTION_INTERVAL_SECONDS is set); how many tasks went."""
    result = tasks_prune_scheduled()
    return result.tasks if result else 0


@shared_task(name="orchestration.tasks.evaluate_rollouts")
def evaluate_rollouts() -> int:
    """Beat's judgement of every canary with automatic rollback on; how many it rolled back."""
    return rollouts_evaluate()


@shared_task(name="orchestration.tasks.deliver_webhook")
def deliver_webhook(delivery_id: int) -> bool:
    """Sent on commit with a new or redelivered delivery, for latency; the beat sweep below is what guarantees it."""
    return webhook_deliver(delivery_id=delivery_id)


@shared_task(name="orchestration.tasks.deliver_due_webhooks")
def deliver_due_webhooks() -> int:
    """Beat's sweep of due webhook deliveries (every WEBHOOK_DELIVER_INTERVAL_SECONDS); how many were attempted."""
    return webhooks_deliver_due()
