"""The agent runtime: drives the OpenAI Agents SDK and makes decisions; it never executes a business action.

(Named `agent_runtime` because the SDK owns the import name `agents`.)
"""
