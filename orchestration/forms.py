"""The operator console's forms: what an operator fills in to act on a task in the manual queue.

Forms only collect and check input; the services in `orchestration/services/queue.py` decide and act. The
result form is generated from the tool's result schema, so an operator never types raw JSON for a simple field.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth.models import User

NOTE_HELP = "Why: kept in the task's audit log"


class _Confirmed(forms.Form):
    note = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), help_text=NOTE_HELP)
    seen_handoff_at = forms.DateTimeField(widget=forms.HiddenInput, required=False)
    confirm = forms.BooleanField(label="I confirm", help_text="This acts on the task at once")


class RetryForm(_Confirmed):
    """Retry now: a fresh retry budget for the failed step."""


class CancelForm(_Confirmed):
    """Cancel: the task ends and nothing more runs."""


class SendBackForm(_Confirmed):
    instruction = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}), help_text="What the agent reads before its next turn"
    )


class CloseForm(_Confirmed):
    output = forms.CharField(
        label="Final result", widget=forms.Textarea(attrs={"rows": 4}), help_text="What the client receives"
    )


class NoteForm(forms.Form):
    note = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), help_text="For whoever works the task next")


class AssignForm(forms.Form):
    assignee = forms.ModelChoiceField(queryset=User.objects.none(), to_field_name="username")
    note = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), help_text=NOTE_HELP)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        workers = User.objects.filter(is_active=True).filter(
            groups__permissions__codename="work_queue"
        ) | User.objects.filter(is_active=True, user_permissions__codename="work_queue")
        self.fields["assignee"].queryset = workers.distinct().order_by("username")  # type: ignore[attr-defined]


class ApprovalForm(_Confirmed):
    verdict = forms.ChoiceField(choices=[("approve", "Approve: run the call"), ("reject", "Reject")])
    note = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2}), help_text="Why; with a rejection the model sees it too"
    )


class ResolveForm(_Confirmed):
    """The failed call's result: one field per property of the tool's result schema (nested objects flattened
    into `parent / child` fields; arrays and other shapes as JSON)."""

    def __init__(self, *args: Any, result_schema: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.result_schema = result_schema
        self.result_paths: dict[str, tuple[str, ...]] = {}
        self.nullable: set[str] = set()
        if _is_object(result_schema) and result_schema.get("properties"):
            self._add_fields((), result_schema, required=True)
        else:  # nothing to generate fields from: the whole object as JSON
            self.fields["result__"] = forms.JSONField(label="Result (JSON object)", initial={})
            self.result_paths["result__"] = ()

    def _add_fields(self, path: tuple[str, ...], schema: dict[str, Any], *, required: bool) -> None:
        required_order = list(schema.get("required", []))
        wanted = set(required_order)
        properties = schema.get("properties") or {}
        # jsonb keeps no key order: the schema's `required` list (an array) gives the author's order back.
        ordered = sorted(properties, key=lambda key: (required_order.index(key) if key in wanted else len(wanted), key))
        for name in ordered:
            sub = properties[name]
            here = (*path, name)
            needed = required and name in wanted
            if _is_object(sub) and sub.get("properties"):
                self._add_fields(here, sub, required=needed)
                continue
            field_name = "result__" + "__".join(here)
            self.fields[field_name] = _field_for(" / ".join(here), sub, required=needed)
            self.result_paths[field_name] = here
            if "null" in _types(sub):
                self.nullable.add(field_name)

    def result(self) -> Any:
        """The result object from the cleaned fields (the service checks it against the schema)."""
        if "result__" in self.result_paths:
            return self.cleaned_data["result__"]
        data: dict[str, Any] = {}
        for field_name, path in self.result_paths.items():
            value = self.cleaned_data.get(field_name)
            if value is None or value == "":
                if field_name not in self.nullable:
                    continue  # left empty: absent (the schema says whether that is allowed)
                value = None  # left empty where the schema allows null: null
            into = data
            for key in path[:-1]:
                into = into.setdefault(key, {})
            into[path[-1]] = value
        return data


def _is_object(schema: dict[str, Any]) -> bool:
    return schema.get("type") == "object"


def _types(schema: dict[str, Any]) -> set[str]:
    kind = schema.get("type")
    return set(kind) if isinstance(kind, list) else {str(kind)}


def _field_for(label: str, schema: dict[str, Any], *, required: bool) -> forms.Field:
    types = _types(schema) - {"null"}
    required = required and "null" not in _types(schema)
    help_text = schema.get("description", "")
    if isinstance(schema.get("enum"), list):
        values = {str(value): value for value in schema["enum"]}  # the form sends text; the schema wants the value
        choices = [("", "---------")] * (not required) + [(text, text) for text in values]
        return forms.TypedChoiceField(
            choices=choices, coerce=values.__getitem__, required=required, label=label, help_text=help_text
        )
    if types == {"integer"}:
        return forms.IntegerField(required=required, label=label, help_text=help_text)
    if types == {"number"}:
        return forms.FloatField(required=required, label=label, help_text=help_text)
    if types == {"boolean"}:
        return forms.NullBooleanField(required=False, label=label, help_text=help_text)
    if types == {"string"}:
        hint = "ISO 8601, e.g. 2026-12-01T12:00:00+00:00" if schema.get("format") == "date-time" else help_text
        return forms.CharField(required=required, label=label, help_text=hint, strip=False)
    return forms.JSONField(
        required=required,
        label=f"{label} (JSON)",
        help_text=help_text or "a JSON value following the tool's result schema",
        widget=forms.Textarea(attrs={"rows": 3}),
    )


class BulkRetryForm(forms.Form):
    """After an incident: every task handed off for one reason since a given time, retried in one action."""

    reason = forms.ChoiceField(choices=[])
    since = forms.DateTimeField(help_text="Handed off at or after this time, e.g. 2026-12-01 14:00 (server time)")
    note = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), help_text=NOTE_HELP)
    confirm = forms.BooleanField(required=False, label="Yes, retry them all")
    shown_count = forms.IntegerField(required=False, widget=forms.HiddenInput)

    def __init__(self, *args: Any, reasons: list[tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["reason"].choices = reasons  # type: ignore[attr-defined]
