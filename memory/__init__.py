"""Session memory (short window + long summary, redacted). Built by the memory issue; nothing here yet."""
