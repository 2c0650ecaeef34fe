"""Every write of the orchestrator: one module per concern, keyword-only typed functions."""
