"""Held tool calls in the admin: deciding one resumes its task; a decision is final and bound to who gave it."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest

from orchestration.models import Approval, ApprovalDecision
from orchestration.services.approvals import DECIDE_PERMISSION, ApprovalNotPending, approval_decide


class ApprovalForm(forms.ModelForm[Approval]):
    verdict = forms.ChoiceField(choices=[("approve", "Approve: run the call"), ("reject", "Reject")])
    reply = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 3}), help_text="Shown to the model with a rejection"
    )

    class Meta:
        model = Approval
        fields: list[str] = []


@admin.register(Approval)
class ApprovalAdmin(admin.ModelAdmin[Approval]):
    """Held tool calls. Deciding one resumes its task; a decision is final and bound to who gave it."""

    form = ApprovalForm
    list_display = ["tool", "task", "decision", "reason", "created_at", "decided_by"]
    list_filter = ["decision", "tool"]
    list_select_related = ["task", "decided_by"]
    show_full_result_count = False
    readonly_fields = ["task", "tool", "arguments", "reason", "decision", "message", "decided_by", "decided_at"]

    def get_fields(self, request: HttpRequest, obj: Approval | None = None) -> Any:
        decided = obj is not None and obj.decision != ApprovalDecision.PENDING
        return self.readonly_fields + ([] if decided else ["verdict", "reply"])

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Approval | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Approval | None = None) -> bool:
        return request.user.has_perm(DECIDE_PERMISSION) and (obj is None or obj.decision == ApprovalDecision.PENDING)

    def save_model(self, request: HttpRequest, obj: Approval, form: Any, change: bool) -> None:
        try:
            approval_decide(
                approval_id=obj.pk,
                user=request.user,  # type: ignore[arg-type]
                approve=form.cleaned_data["verdict"] == "approve",
                message=form.cleaned_data.get("reply", ""),
            )
        except (ApprovalNotPending, PermissionDenied) as refused:
            self.message_user(request, f"Not decided: {refused}", messages.ERROR)
