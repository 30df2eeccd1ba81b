"""The Agent WebSocket protocol: typed messages and the sans-I/O conversation rules."""
