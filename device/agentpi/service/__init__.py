"""The boot service: installing it, and checking what it needs (doctor)."""
