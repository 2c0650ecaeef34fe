"""Injected faults for tests and drills: one plan, consulted by the tool call path, the runtime and the scheduler."""
