"""Tasks, their steps and their transition log, what is recorded beside them (`tasks`, `steps`, `records`), and
outcome webhooks (`webhooks`)."""

from __future__ import annotations

from orchestration.models.records import (
    Approval,
    ApprovalDecision,
    OperatorAction,
    OperatorActionKind,
    RecoveryDecision,
    RecoveryEvent,
    TaskSpan,
)
from orchestration.models.steps import (
    Step,
    StepKind,
    StepState,
)
from orchestration.models.tasks import (
    OPEN_STATES,
    RUNNABLE_STATES,
    TERMINAL_STATES,
    HandoffReason,
    QueueTask,
    Task,
    TaskState,
    TaskTransition,
    Transition,
)
from orchestration.models.webhooks import (
    WebhookAttempt,
    WebhookAttemptOutcome,
    WebhookAuditAction,
    WebhookAuditEntry,
    WebhookDelivery,
    WebhookDeliveryState,
    WebhookEndpoint,
    WebhookEvent,
)

__all__ = [
    "OPEN_STATES",
    "RUNNABLE_STATES",
    "TERMINAL_STATES",
    "Approval",
    "ApprovalDecision",
    "HandoffReason",
    "OperatorAction",
    "OperatorActionKind",
    "QueueTask",
    "RecoveryDecision",
    "RecoveryEvent",
    "Step",
    "StepKind",
    "StepState",
    "Task",
    "TaskSpan",
    "TaskState",
    "TaskTransition",
    "Transition",
    "WebhookAttempt",
    "WebhookAttemptOutcome",
    "WebhookAuditAction",
    "WebhookAuditEntry",
    "WebhookDelivery",
    "WebhookDeliveryState",
    "WebhookEndpoint",
    "WebhookEvent",
]
