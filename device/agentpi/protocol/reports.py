"""What each server event says to whoever watches the device: its typed event for the bus."""

from __future__ import annotations

from agentpi import events as ev
from agentpi.protocol import messages as m


def report(event: m.ServerEvent) -> ev.DeviceEvent | None:
    """The observable event for a server message (None for those only the session needs)."""
    match event:
        case m.UserTranscript():
            return ev.UserTranscript(event.text, event.event_id)
        case m.TentativeUserTranscript():
            return ev.TentativeUserTranscript(event.text)
        case m.AgentResponse():
            return ev.AgentResponse(event.text, event.event_id)
        case m.AgentResponseCorrection():
            return ev.AgentResponseCorrection(event.original, event.corrected, event.event_id)
        case m.AgentResponseComplete():
            return ev.AgentResponseComplete(event.event_id)
        case m.Interruption():
            return ev.Interruption(event.event_id)
        case m.ClientToolCall():
            return ev.ToolCall(event.tool_name, event.tool_call_id, event.parameters)
        case m.VadScore():
            return ev.VadScore(event.score)
        case m.InternalTentativeAgentResponse():
            return ev.TentativeAgentResponse(event.text)
        case m.AgentChatResponsePart():
            return ev.AgentChatResponsePart(event.text, event.part_type)
        case m.AgentToolResponse():
            return ev.AgentToolResponse(event.tool_name, event.tool_type, event.is_error)
        case m.ContextualUpdate():
            return ev.ContextualUpdateReceived(event.text)
        case m.ErrorEvent():
            return ev.ServerError(event.code, event.error_type, event.message)
        case m.UnknownEvent():
            return ev.UnknownEventSeen(event.type)
        case m.Ping(ping_ms=int(ping_ms)):
            return ev.Latency(ping_ms)
        case m.ConversationInitiationMetadata():
            return ev.ConversationStarted(
                event.conversation_id,
                event.user_input_audio_format,
                event.agent_output_audio_format,
            )
    return None
