"""Writes of the tool layer: contracts and their versions, the call path, circuit breakers."""
