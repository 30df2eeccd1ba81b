"""What the device tells the agent about itself: the conversation's initiation data (user id,
dynamic variables, overrides) and the background text of contextual updates."""

from __future__ import annotations

import socket
from datetime import datetime
from typing import Any

from agentpi import __version__
from agentpi.agent.definition import put
from agentpi.agent.fit import DEVICE_EVENTS
from agentpi.config.document import Config, ContextConfig, ConversationConfig
from agentpi.events import EventRecord
from agentpi.protocol.messages import ConversationInitiationClientData, JsonDict
from agentpi.wake.settings import model_label

SOURCE_INFO = {"source": "agentpi", "version": __version__}


def initiation_data(
    conversation: ConversationConfig, device_id: str, auto_keywords: tuple[str, ...] = ()
) -> ConversationInitiationClientData:
    """``auto_keywords``: what "auto" in ``keywords`` stands for (the wake phrases, the room)."""
    override: JsonDict = {}
    for path, value in conversation.overrides.sent().items():
        if path == "asr.keywords" and isinstance(value, list):
            value = _expanded(value, auto_keywords)
        put(override, path, value)
    if conversation.client_events:
        put(override, "conversation.client_events", list(conversation.client_events))
    elif conversation.request_client_events:
        put(override, "conversation.client_events", list(DEVICE_EVENTS))
    return ConversationInitiationClientData(
        conversation_config_override=override,
        dynamic_variables=dict(conversation.dynamic_variables),
        user_id=conversation.user_id or device_id,
        source_info=dict(SOURCE_INFO),
        branch_id=conversation.branch_id or None,
        environment=conversation.environment or None,
        starting_workflow_node_id=conversation.starting_workflow_node_id or None,
    )


def _expanded(keywords: list[str], auto: tuple[str, ...]) -> list[str]:
    out: list[str] = []
    for word in keywords:
        for item in auto if word == "auto" else (word,):
            if item not in out:
                out.append(item)
    return out


def auto_keywords(config: Config) -> tuple[str, ...]:
    """The words "auto" stands for: each wake phrase as said, and the room, when known."""
    phrases = [model_label(model).replace("_", " ") for model in config.wake.models]
    room = config.context.location
    return tuple(phrases + ([room] if room and room != "unknown" else []))


def local_time(now: datetime | None = None) -> str:
    """The wall clock as a person (or a language model) reads it, with the zone."""
    moment = (
        now if now is not None and now.tzinfo is not None else (now or datetime.now()).astimezone()
    )
    zone = moment.strftime("%z")
    return moment.strftime("%A %d %B %Y, %H:%M ") + f"{moment.tzname()} (UTC{zone[:3]}:{zone[3:]})"


class _LeaveUnknown(dict[str, Any]):
    """A placeholder without a value stays as written, rather than failing the update."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def start_context(context: ContextConfig, device_id: str, now: datetime | None = None) -> str:
    """The update sent as a conversation starts ("" when switched off)."""
    if not context.at_start:
        return ""
    fields = {
        "local_time": local_time(now),
        "location": context.location,
        "device_id": device_id,
        "hostname": socket.gethostname(),
    }
    return context.at_start.format_map(_LeaveUnknown(fields))


def event_context(context: ContextConfig, event: EventRecord) -> str:
    """The update a device event calls for ("" when the config names none for its kind)."""
    template = context.on_event.get(event["event"])
    if not template:
        return ""
    fields = {key: value for key, value in event.items() if key not in ("t", "event")}
    return template.format_map(_LeaveUnknown(fields))
