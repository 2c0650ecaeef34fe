"""What a task remembers and what it must not: the vault behind redaction tokens, the summary of facts and the
relevance that picks which facts a turn gets (the session store and its wiring into runs come next)."""
