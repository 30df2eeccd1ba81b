"""Reading settings: TOML into typed dataclasses, credentials, files the service trusts."""
