"""What a task remembers and what it must not: the vault behind redaction tokens (session memory comes next)."""
