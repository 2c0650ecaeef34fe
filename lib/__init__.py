"""Helpers every layer may use (orchestration, agent_runtime, tools); they import none of those layers."""
