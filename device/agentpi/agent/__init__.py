"""The connection to the agent (real service or the bundled simulator)."""
