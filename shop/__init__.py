"""The demo business domain the demo tools act on: orders and their notes."""
