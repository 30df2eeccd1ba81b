"""Client tools the agent can call: the registry, the device's own, the owner's."""
