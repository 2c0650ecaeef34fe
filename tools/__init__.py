"""The tool adapter layer: executes business actions and returns the one result envelope."""
