"""Prometheus counters of the tool layer."""

from prometheus_client import Counter

CONTRACT_VIOLATIONS = Counter(
    "tool_contract_violations_total", "Tool results that broke their contract (undeclared code, bad result)", ["tool"]
)
