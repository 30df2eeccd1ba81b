"""The per-conversation overrides an agent may allow, and the refusal of one it does not.

An agent allows nothing by default. An override it does not allow ends the conversation at its
start (close 1008, ``override_error``) with "Override for field 'voice_id' is not allowed by
config", which names the field but not the setting to change; ``refusal_advice`` does.
"""

from __future__ import annotations

import re

OVERRIDES: dict[str, tuple[str, str]] = {
    "agent.first_message": ("first_message", "Security > Overrides > First message"),
    "agent.language": ("language", "Security > Overrides > Language"),
    "agent.prompt.prompt": ("prompt", "Security > Overrides > System prompt"),
    "agent.prompt.llm": ("llm", "Security > Overrides > LLM"),
    "asr.keywords": ("keywords", "Security > Overrides > ASR keywords"),
    "tts.voice_id": ("voice_id", "Security > Overrides > Voice"),
    "tts.speed": ("speed", "Security > Overrides > Voice speed"),
    "tts.stability": ("stability", "Security > Overrides > Voice stability"),
    "tts.similarity_boost": ("similarity_boost", "Security > Overrides > Voice similarity"),
    "conversation.text_only": ("text_only", "Security > Overrides > Text only"),
}
"""Path inside ``conversation_config_override`` -> (the field the refusal names, where the
agent's settings allow it); the switch itself is the same path under
``platform_settings.overrides.conversation_config_override``."""

ALLOWED_ROOT = "platform_settings.overrides.conversation_config_override"

CONFIG_PATHS = {
    "first_message": "agent.first_message",
    "language": "agent.language",
    "prompt": "agent.prompt.prompt",
    "llm": "agent.prompt.llm",
    "voice_id": "tts.voice_id",
    "speed": "tts.speed",
    "stability": "tts.stability",
    "similarity_boost": "tts.similarity_boost",
    "keywords": "asr.keywords",
    "text_only": "conversation.text_only",
}
"""[conversation.overrides] keys (and [wake.agents] ones) -> where each goes in
``conversation_config_override``; the key is the field a refusal names."""

REFUSAL = re.compile(r"Override for field '([A-Za-z_]+)' is not allowed")


def refusal_advice(text: str) -> str | None:
    """One line saying which agent setting to turn on, for a refusal's message; else None."""
    match = REFUSAL.search(text)
    if match is None:
        return None
    field = match.group(1)
    if field == "client_events":
        return (
            "the agent refuses the client_events override: set [conversation] "
            "request_client_events = false and give the agent the events instead "
            "(`agentpi agent-setup --apply`)"
        )
    for path, (name, setting) in OVERRIDES.items():
        if name == field:
            remove = f", or remove {field} from [conversation.overrides]"
            return (
                f"the agent does not allow the {field} override: turn on {setting} in its "
                f"settings ({ALLOWED_ROOT}.{path} = true; `agentpi agent-setup --apply` does it)"
                + (remove if field in CONFIG_PATHS else "")
            )
    return f"the agent does not allow the {field} override: allow it in its Security settings"
