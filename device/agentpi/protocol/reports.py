"""What each server event says to whoever watches the device: its typed event for the bus."""

from __future__ import annotations

from agentpi import events as ev
from agentpi.protocol import messages as m

MAX_INTEGRATIONS_LISTED = 64
"""MCP integrations named in one line (a server may list thousands)."""


def aligned_words(alignment: m.JsonDict | None) -> tuple[str, float] | None:
    """The text an audio chunk speaks and when its first character starts (seconds into the
    chunk), from ``audio.alignment``; None when there is none or it is not as the definition
    says (a server's mistake costs the pacing, never the audio)."""
    if not alignment:
        return None
    chars = alignment.get("chars")
    starts = alignment.get("char_start_times_ms")
    if not isinstance(chars, list) or not isinstance(starts, list) or not chars or not starts:
        return None
    if not all(isinstance(ch, str) for ch in chars):
        return None
    first = starts[0]
    if isinstance(first, bool) or not isinstance(first, int | float) or not 0 <= first < 60_000:
        return None
    text = ev.shortened("".join(chars))
    return (text, first / 1000) if text else None


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
        case m.AgentReasoningResponsePart():
            return ev.AgentReasoning(event.text, event.part_type)
        case m.RichContent():
            return ev.RichContentShown(event.rich_content_id, event.component)
        case m.AgentToolRequest():
            return ev.AgentToolRequest(event.tool_name, event.tool_call_id, event.tool_type)
        case m.AgentToolResponseFullPayload():
            return ev.AgentToolResult(
                event.tool_name,
                event.tool_call_id,
                event.is_error,
                event.is_blocked,
                event.truncated,
                len(event.full_tool_result),
            )
        case m.McpToolCall():
            return ev.McpToolCall(
                event.tool_name,
                event.tool_call_id,
                event.state,
                event.service_id,
                event.error_message,
                event.approval_timeout_secs,
            )
        case m.McpConnectionStatus():
            listed = event.integrations[:MAX_INTEGRATIONS_LISTED]
            return ev.McpConnectionStatus([item.to_json() for item in listed])
        case m.ContextUsage():
            limit = event.context_limit_tokens
            percent = round(100 * event.context_tokens / limit, 1) if limit > 0 else None
            return ev.ContextUsage(event.model, event.context_tokens, limit, percent)
        case m.AsrInitiationMetadata():
            return ev.AsrInitiationMetadata(event.metadata)
        case m.GuardrailTriggered():
            return ev.GuardrailTriggered()
        case m.InternalTurnProbability():
            return ev.TurnProbability(event.turn_probability)
        case m.AgentTyping():
            return ev.AgentTyping(event.is_typing, event.duration_ms)
        case m.ExternalAgentConnected():
            return ev.ExternalAgent(True)
        case m.ExternalAgentDisconnected():
            return ev.ExternalAgent(False)
        case m.ConversationInitiationMetadata():
            return ev.ConversationStarted(
                event.conversation_id,
                event.user_input_audio_format,
                event.agent_output_audio_format,
            )
    return None
