"""The policy: pure functions from facts to a Decision, one module per sub-domain. No database, no clock, no dice.

Where a task goes next is decided here and nowhere else; `orchestration.services.decisions.decision_apply` carries
a decision out (records it, makes its transitions, schedules the next run after commit).

- `tool_results`: a tool call's result (success, the handoff tool, approval holds, the error dictionary, retries,
  re-plans).
- `model_turns`: what a recorded model turn leads to (its first plan, calls to tools the agent lacks), the
  final answer, the turn limit, an unknown agent.
- `model_failures`: a failed model request (retry after a backoff, or a human).
- `lost_steps`: a step whose worker vanished, a call whose move back to PLANNED was lost, an abandoned step.
- `database_failures`: the run's database connection or transaction failed.
- `operator_actions`: what people do (approve or reject a held call, cancel) and what a cancellation means for a
  running step.
"""
