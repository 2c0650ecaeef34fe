"""The rules a contract must follow before it is saved. Each problem names the field and the path in it."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from typing import Any

from agents.exceptions import UserError
from agents.strict_schema import ensure_strict_json_schema
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from lib.versioning import Problems
from tools.errors import DICTIONARY_ACTIONS, SHARED_ERROR_CODES
from tools.models import ApprovalMode

_MONEY_NAME = re.compile(r"(amount|price|cost|total|fee|balance|refund|money|cents)", re.IGNORECASE)
_TIME_NAME = re.compile(r"(_at|_time|timestamp|_date|deadline|_until|_since|^date|^time)$", re.IGNORECASE)
_TIME_FORMATS = {"date-time", "date"}
_CODE = re.compile(r"^[A-Z][A-Z0-9_]*$")


def _types(schema: dict[str, Any]) -> set[str]:
    declared = schema.get("type", [])
    return {declared} if isinstance(declared, str) else set(declared)


def _properties(schema: Any, path: str = "") -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(path, property name, property schema) for every property, nested objects and arrays included."""
    if not isinstance(schema, dict):
        return
    for name, sub in (schema.get("properties") or {}).items():
        sub_path = f"{path}.{name}" if path else name
        if isinstance(sub, dict):
            yield sub_path, name, sub
            yield from _properties(sub, sub_path)
            yield from _properties(sub.get("items"), f"{sub_path}[]")
    yield from _properties(schema.get("items"), f"{path}[]" if path else "[]")


def schema_problems(schema: Any, *, for_parameters: bool) -> list[str]:
    if not isinstance(schema, dict):
        return ["must be a JSON object (a JSON Schema)"]
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        where = "/".join(str(part) for part in exc.path) or "(root)"
        return [f"not a valid JSON Schema at {where}: {exc.message}"]
    problems: list[str] = []
    if schema.get("type") != "object":
        problems.append('the top level must be {"type": "object", ...}')
    for path, name, sub in _properties(schema):
        types = _types(sub)
        if "number" in types and _MONEY_NAME.search(name):
            problems.append(
                f"{path}: money must be an integer in minor units (cents) with a currency code, not a float"
            )
        if "string" in types and _TIME_NAME.search(name) and sub.get("format") not in _TIME_FORMATS:
            problems.append(f'{path}: a time must be ISO 8601: add "format": "date-time"')
    if for_parameters and not problems:
        problems.extend(_strict_problems(schema))
    return problems


def _strict_problems(schema: dict[str, Any]) -> list[str]:
    """The model sees the strict form; every property must be required (optional ones nullable)."""
    problems = []
    for path, _name, sub in [("", "", schema), *_properties(schema)]:
        properties = sub.get("properties")
        if isinstance(properties, dict):
            missing = sorted(set(properties) - set(sub.get("required", [])))
            if missing:
                where = f"{path}: " if path else ""
                problems.append(
                    f"{where}properties {', '.join(missing)} are not required; in strict mode every property is "
                    'required, so make optional ones nullable ("type": ["string", "null"]) and list them'
                )
    try:
        ensure_strict_json_schema(copy.deepcopy(schema))
    except UserError as exc:
        problems.append(f"cannot be made strict: {exc}")
    return problems


def error_code_problems(entries: Any) -> list[str]:
    if not isinstance(entries, list):
        return ["must be a list of {code, meaning, retryable, action} objects"]
    problems: list[str] = []
    seen: set[str] = set()
    actions = {str(action) for action in DICTIONARY_ACTIONS}
    for index, entry in enumerate(entries):
        label = f"entry {index + 1}"
        if not isinstance(entry, dict):
            problems.append(f"{label}: must be an object")
            continue
        code = entry.get("code")
        if not isinstance(code, str) or not _CODE.match(code):
            problems.append(f"{label}: code must be UPPER_SNAKE_CASE")
            continue
        label = f"{code}"
        if code in SHARED_ERROR_CODES:
            problems.append(f"{label}: is a shared code, defined once for every tool")
        if code in seen:
            problems.append(f"{label}: appears twice")
        seen.add(code)
        if not isinstance(entry.get("meaning"), str) or not entry["meaning"].strip():
            problems.append(f"{label}: needs a meaning")
        if not isinstance(entry.get("retryable"), bool):
            problems.append(f"{label}: needs retryable: true or false")
        if entry.get("action") not in actions:
            problems.append(f"{label}: needs a recovery action, one of {', '.join(sorted(actions))}")
        elif isinstance(entry.get("retryable"), bool) and entry["retryable"] != (entry["action"] == "retry"):
            problems.append(f"{label}: retryable must be true exactly when the action is retry")
        unknown = set(entry) - {"code", "meaning", "retryable", "action"}
        if unknown:
            problems.append(f"{label}: unknown keys {', '.join(sorted(unknown))}")
    return problems


def approval_problems(mode: str, rule: Any, parameters_schema: Any) -> list[str]:
    if mode != ApprovalMode.RULE:
        return [] if rule in (None, {}) else ["only an approval mode of 'rule' takes a rule"]
    if not isinstance(rule, dict) or set(rule) != {"field", "above"}:
        return ['must be {"field": <integer parameter>, "above": <integer>}']
    properties = (parameters_schema or {}).get("properties", {}) if isinstance(parameters_schema, dict) else {}
    field = properties.get(rule["field"])
    if not isinstance(field, dict) or "integer" not in _types(field):
        return [f"field {rule['field']!r} must name an integer parameter"]
    if not isinstance(rule["above"], int) or isinstance(rule["above"], bool) or rule["above"] < 0:
        return ["above must be a non-negative integer"]
    return []


def sensitive_field_problems(fields: Any, parameters_schema: Any) -> list[str]:
    if not isinstance(fields, list) or not all(isinstance(item, str) for item in fields):
        return ["must be a list of parameter names"]
    known = {path for path, _, _ in _properties(parameters_schema)}
    return [f"{name}: no such parameter" for name in fields if name not in known]


def policy_problems(values: dict[str, Any]) -> Problems:
    problems: Problems = {}
    if not 0 < values["timeout_seconds"] <= 300:
        problems["timeout_seconds"] = ["must be more than 0 and at most 300 seconds"]
    if values["retry_max"] > 10:
        problems["retry_max"] = ["at most 10 retries"]
    if values["retry_base_seconds"] <= 0:
        problems["retry_base_seconds"] = ["must be more than 0"]
    if values["retry_cap_seconds"] < values["retry_base_seconds"]:
        problems["retry_cap_seconds"] = ["must be at least the base delay"]
    for name in ("circuit_failure_threshold", "circuit_window_seconds", "circuit_open_seconds"):
        if values[name] < 1:
            problems[name] = ["must be at least 1"]
    return problems


def contract_problems(values: dict[str, Any]) -> Problems:
    """Every problem of a contract's versioned fields, by field name; empty when it may be saved."""
    problems: Problems = {}
    checks = {
        "parameters_schema": schema_problems(values["parameters_schema"], for_parameters=True),
        "result_schema": schema_problems(values["result_schema"], for_parameters=False),
        "error_codes": error_code_problems(values["error_codes"]),
        "approval_rule": approval_problems(
            values["approval_mode"], values.get("approval_rule"), values["parameters_schema"]
        ),
        "sensitive_fields": sensitive_field_problems(values.get("sensitive_fields", []), values["parameters_schema"]),
    }
    problems.update({field: found for field, found in checks.items() if found})
    problems.update(policy_problems(values))
    if not str(values.get("description", "")).strip():
        problems["description"] = ["the model needs a description"]
    return problems
