"""The device's configuration: every package's settings composed, checked once at start."""
