"""Canary rollouts in the admin: canary and stable side by side, the share, the rollback switch, the audit.

Every change goes through `agent_runtime.rollouts` (a transition or a recorded edit, with the reason asked here);
nothing is a bare field edit, and a rollout is never deleted.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from agent_runtime.models import AgentVersion, Rollout, RolloutState
from agent_runtime.rollouts import (
    AUTO_ROLLBACK_SETTINGS,
    RolloutInvalid,
    rollout_actor,
    rollout_promote,
    rollout_roll_back,
    rollout_settings_change,
    rollout_share_change,
    rollout_start,
)
from orchestration.services.rollouts import ArmFigures, rollout_comparison

KEEP, PROMOTE, ROLL_BACK = "keep", "promote", "roll_back"


class RolloutForm(forms.ModelForm[Rollout]):
    switch = forms.ChoiceField(
        choices=[
            (KEEP, "Keep the canary running"),
            (PROMOTE, "Promote the canary: every new task gets it"),
            (ROLL_BACK, "Roll back: every new task gets the stable version, now"),
        ],
        initial=KEEP,
        widget=forms.RadioSelect,
        required=False,
    )
    reason = forms.CharField(
        max_length=2000, widget=forms.Textarea(attrs={"rows": 2, "cols": 80}), help_text="Recorded with the change"
    )

    class Meta:
        model = Rollout
        fields = ["canary", "canary_percent", *AUTO_ROLLBACK_SETTINGS, "alpha"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        canary = self.fields.get("canary")
        if isinstance(canary, forms.ModelChoiceField):  # shown when a rollout is added, not on its page
            canary.queryset = AgentVersion.objects.select_related("agent").order_by("agent__name", "-number")


def _interval(low: float, high: float, *, percent: bool = False, digits: int = 4) -> str:
    if percent:
        return f"{low * 100:.1f} to {high * 100:.1f} %"
    return f"{low:.{digits}f} to {high:.{digits}f}"


def _figures_rows(stable: ArmFigures, canary: ArmFigures) -> list[tuple[str, str, str]]:
    def row(label: str, show: Any) -> tuple[str, str, str]:
        return (label, show(stable), show(canary))

    return [
        row("version", lambda arm: f"v{arm.version}"),
        row("tasks assigned", lambda arm: f"{arm.tasks}"),
        row("finished by the agent", lambda arm: f"{arm.outcomes.finished}"),
        row(
            "success rate (95 % interval)",
            lambda arm: (
                f"{arm.success_rate * 100:.1f} % ({_interval(*arm.success_interval, percent=True)}), "
                f"n={arm.outcomes.finished}"
            ),
        ),
        row(
            "handoff ratio (95 % interval)",
            lambda arm: (
                f"{arm.handoff_ratio * 100:.1f} % ({_interval(*arm.handoff_interval, percent=True)}), "
                f"n={arm.outcomes.finished}"
            ),
        ),
        row(
            "p95 step latency (95 % interval)",
            lambda arm: (
                f"{arm.step_p95_ms[0]:.0f} ms ({arm.step_p95_ms[1]:.0f} to {arm.step_p95_ms[2]:.0f}), "
                f"n={arm.steps} steps"
            ),
        ),
        row(
            "cost per successful task (95 % interval)",
            lambda arm: (
                f"${arm.outcomes.cost_per_success.mean:.6f} ({_interval(*arm.cost_interval, digits=6)}), "
                f"n={arm.outcomes.successes}"
            ),
        ),
        row(
            "tokens per successful task (95 % interval)",
            lambda arm: (
                f"{arm.tokens_per_success.mean:.0f} ({_interval(*arm.tokens_interval, digits=0)}), "
                f"n={arm.outcomes.successes}"
            ),
        ),
    ]


@admin.register(Rollout)
class RolloutAdmin(admin.ModelAdmin[Rollout]):
    form = RolloutForm
    list_display = ["agent", "versions", "canary_percent", "state", "auto_rollback", "started_at", "verdict"]
    list_filter = ["state", "agent"]
    list_select_related = ["agent", "stable", "canary"]

    def get_fields(self, request: HttpRequest, obj: Rollout | None = None) -> Any:
        if obj is None:
            return ["canary", "canary_percent", *AUTO_ROLLBACK_SETTINGS, "alpha", "reason"]
        editable = ["switch", "canary_percent", *AUTO_ROLLBACK_SETTINGS, "reason"]
        shown = ["agent", "versions", "state", "comparison", "verdict", "audit"]
        return [*shown, *editable] if obj.state == RolloutState.ACTIVE else [*shown, "canary_percent", "alpha"]

    def get_readonly_fields(self, request: HttpRequest, obj: Rollout | None = None) -> list[str]:
        if obj is None:
            return []
        shown = ["agent", "versions", "state", "comparison", "verdict", "audit", "alpha"]
        return shown if obj.state == RolloutState.ACTIVE else [*shown, "canary_percent"]

    def has_delete_permission(self, request: HttpRequest, obj: Rollout | None = None) -> bool:
        return False  # the audit of a rollout is kept

    @admin.display(description="versions")
    def versions(self, rollout: Rollout) -> str:
        return f"canary v{rollout.canary.number} beside stable v{rollout.stable.number}"

    @admin.display(description="latest verdict")
    def verdict(self, rollout: Rollout) -> str:
        reason = rollout.last_verdict.get("reason") if rollout.last_verdict else None
        return f"{reason} ({rollout.evaluated_at:%Y-%m-%d %H:%M:%S})" if reason and rollout.evaluated_at else "-"

    @admin.display(description="canary beside stable")
    def comparison(self, rollout: Rollout) -> SafeString:
        stable, canary = rollout_comparison(rollout)
        rows = format_html_join("", "<tr><th>{}</th><td>{}</td><td>{}</td></tr>", _figures_rows(stable, canary))
        return format_html(
            '<table class="rollout-comparison"><thead><tr><th></th><th>stable</th><th>canary</th></tr></thead>'
            "<tbody>{}</tbody></table><p>Intervals: Wilson for rates, normal for means, order statistics for the "
            "p95. Forced-version tasks are not counted.</p>",
            rows,
        )

    @admin.display(description="audit")
    def audit(self, rollout: Rollout) -> SafeString:
        return format_html_join(
            "",
            "<div>{} {} by {}: {}</div>",
            (
                (event.created_at.strftime("%Y-%m-%d %H:%M:%S"), event.get_kind_display(), event.actor, event.reason)
                for event in rollout.events.order_by("id")
            ),
        )

    def save_model(self, request: HttpRequest, obj: Rollout, form: Any, change: bool) -> None:
        data, user = form.cleaned_data, request.user
        try:
            if not change:
                settings = {name: data[name] for name in (*AUTO_ROLLBACK_SETTINGS, "alpha")}
                created = rollout_start(
                    canary=data["canary"],
                    percent=Decimal(data["canary_percent"]),
                    user=user,  # type: ignore[arg-type]
                    reason=data["reason"],
                    settings=settings,
                )
                obj.__dict__.update(created.__dict__)  # what the admin logs and redirects to: the rollout saved
                return
            self._change(request, Rollout.objects.get(pk=obj.pk), form)
        except RolloutInvalid as refused:
            self.message_user(request, f"Not saved: {refused}", messages.ERROR)

    def _change(self, request: HttpRequest, stored: Rollout, form: Any) -> None:
        data, user, reason = form.cleaned_data, request.user, form.cleaned_data["reason"]
        if data.get("switch") == ROLL_BACK:
            rollout_roll_back(rollout=stored, actor=rollout_actor(user), reason=reason)  # type: ignore[arg-type]
            return
        if "canary_percent" in form.changed_data:
            rollout_share_change(rollout=stored, percent=data["canary_percent"], user=user, reason=reason)  # type: ignore[arg-type]
        changed = {name: data[name] for name in AUTO_ROLLBACK_SETTINGS if name in form.changed_data}
        if changed:
            rollout_settings_change(rollout=stored, values=changed, user=user, reason=reason)  # type: ignore[arg-type]
        if data.get("switch") == PROMOTE:
            rollout_promote(rollout=stored, user=user, reason=reason)  # type: ignore[arg-type]
