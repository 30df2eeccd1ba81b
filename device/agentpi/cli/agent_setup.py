"""``agentpi agent-setup``: the change to the agent's settings this configuration needs (its
client events, the overrides to allow, the device's client tools), shown, and made with --apply.
Nothing else of the agent is touched, and nothing is removed."""

from __future__ import annotations

import argparse
import json

from agentpi.agent.fit import describe_change, findings, setup_change
from agentpi.agent.rest import read_agent, update_agent
from agentpi.config.document import ConfigError, load_config
from agentpi.settings.credentials import read_api_key


def agent_setup(args: argparse.Namespace) -> int:
    """`agentpi agent-setup [--apply]`: show the change, make it with --apply, say what is left."""
    config = load_config(args.config)
    key = read_api_key()
    if key is None:
        raise ConfigError(
            "agent-setup reads and changes the agent's settings: set ELEVENLABS_API_KEY "
            "(or the systemd credential elevenlabs_api_key)"
        )
    agent = config.agent
    document = read_agent(agent.url, agent.agent_id, key.reveal())
    change = setup_change(config, document)
    if not change:
        print(f"agent {agent.agent_id} already has what this config needs")
    else:
        print(f"agent {agent.agent_id} needs, for this config:")
        for line in describe_change(config, change):
            print(f"  - {line}")
        print("as the PATCH /v1/convai/agents/ID body (nothing else is changed):")
        print(json.dumps(change, indent=2))
        if not args.apply:
            print("run again with --apply to make this change")
            return 0
        document = update_agent(agent.url, agent.agent_id, key.reveal(), change)
        print("applied")
    left = [f for f in findings(config, document) if f.ok is False]
    for finding in left:
        print(f"still to fix by hand: {finding.name}: {finding.detail} -> {finding.fix}")
    return 1 if left else 0
