"""One SDK run of a task's agent, made durable by the journal: replays what is recorded, runs what is not."""

from __future__ import annotations

import asyncio
from typing import Any

from agents import Agent, FunctionTool, ModelSettings, RunConfig, Runner
from agents.exceptions import MaxTurnsExceeded
from agents.models.interface import Model
from django.conf import settings

from agent_runtime.durable_model import DurableModel
from agent_runtime.endpoints import OFFLINE, resolve_model
from agent_runtime.journal import RunJournal, RunSuspended
from agent_runtime.prompt import compose_task_message
from agent_runtime.run_memory import RunMemory
from agent_runtime.specs import AgentSpec, RunOutcome
from agent_runtime.summarizer import ModelSummarizer
from agent_runtime.tracing import install_tracing, sdk_trace_id
from lib.exceptions import cause_of
from memory.composer import Recalled
from tools.spec import ToolSpec


async def run_agent(
    spec: AgentSpec,
    *,
    goal: str,
    task_input: dict[str, Any],
    trace_id: str,
    group_id: str,
    journal: RunJournal,
    recalled: Recalled | None = None,
    model: Model | None = None,
) -> RunOutcome:
    """Run (or resume) the agent on a task until it answers, is suspended, or runs out of turns.

    `recalled` is what the task's session held when the task started (journalled by the caller): each turn is
    sent the window plus the relevant facts of the summary, not the whole transcript (`RunMemory`)."""
    recalled = recalled or Recalled()
    durable = DurableModel(
        model or resolve_model(spec.model),
        model_name=spec.model,
        journal=journal,
        deadline_seconds=settings.MODEL_CALL_TIMEOUT_SECONDS,
        price=spec.price,
        output_reserve_tokens=settings.MODEL_OUTPUT_RESERVE_TOKENS,
        fault_key=group_id,
    )
    summarize = None  # the offline, extractive summarizer
    if spec.model != OFFLINE and settings.MEMORY_SUMMARIZER == "model":
        summarize = ModelSummarizer(durable, recalled_turns=recalled.turns)
    memory = RunMemory(recalled=recalled, settings=spec.memory, journal=journal, model=spec.model, summarize=summarize)
    durable.memory = memory
    # One tool call at a time: each call is a state transition of the task, and those are sequential.
    tool_lock = asyncio.Lock()
    agent: Agent[None] = Agent(
        name=spec.name,
        instructions=spec.instructions,
        model=durable,
        model_settings=ModelSettings(**spec.model_settings),
        tools=[_function_tool(tool, journal, tool_lock) for tool in spec.tools],
    )
    install_tracing()
    run_config = RunConfig(
        trace_id=sdk_trace_id(trace_id),
        group_id=group_id,
        workflow_name=f"task:{spec.name}",
        # A call to a tool the agent lacks goes back to the model as an error to re-plan on (the journal
        # counts it against the task's re-plan cap) instead of aborting the run.
        tool_not_found_behavior="return_error_to_model",
        call_model_input_filter=memory,
    )
    try:
        result = await Runner.run(
            agent, compose_task_message(goal, task_input), max_turns=spec.max_turns, run_config=run_config
        )
    except MaxTurnsExceeded:
        return RunOutcome(final_output=None, max_turns_exceeded=True)
    except Exception as exc:
        if cause_of(exc, RunSuspended) is not None:
            return RunOutcome(final_output=None, suspended=True)
        raise
    return RunOutcome(final_output=str(result.final_output))


def _function_tool(tool: ToolSpec, journal: RunJournal, lock: asyncio.Lock) -> FunctionTool:
    async def invoke(_context: Any, arguments: str) -> str:
        async with lock:
            return await journal.call_tool(_context.tool_call_id, tool.name, arguments)

    return FunctionTool(
        name=tool.name,
        description=tool.description,
        params_json_schema=tool.parameters_schema,
        on_invoke_tool=invoke,
        strict_json_schema=True,
    )
