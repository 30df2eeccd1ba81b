"""``agentpi say | context | status | events | start | stop | approve | deny | feedback |
announce | mute | wake-word``: the running device, driven over its control socket."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable

from agentpi.control.client import ControlClientError, event_lines, find_socket, request


def add_control_commands(add_command: Callable[..., argparse.ArgumentParser]) -> None:
    """Commands that talk to the running device over its control socket."""
    helps = {
        "say": "type to the agent: a user message (starts a conversation if none runs)",
        "context": "tell the agent something in the background (a contextual update)",
        "status": "what the running device is doing",
        "events": "follow the running device's event lines (as run --events)",
        "start": "start a conversation now, as a button press would",
        "stop": "end the running conversation",
        "approve": "yes to the MCP tool waiting for approval",
        "deny": "no to the MCP tool waiting for approval",
        "feedback": "rate the agent's last answer: like or dislike",
        "announce": "the agent says this sentence now (a conversation that ends after it)",
        "mute": "the microphone off (on) or on again (off)",
        "wake-word": "which wake word starts a conversation: a model's name, or all",
    }
    for name, text in helps.items():
        command = add_command(name, help=text)
        if name in ("say", "context", "announce"):
            command.add_argument("text", help="what to send")
        if name == "start":
            command.add_argument("--first-message", help="the agent's first words")
            command.add_argument("--instructions", help="background for the agent")
        if name == "context":
            command.add_argument(
                "--id", dest="context_id", help="the agent keeps only the latest text of this id"
            )
        if name in ("approve", "deny"):
            command.add_argument(
                "--tool-call-id", help="which call (default: the oldest waiting; see status)"
            )
        if name == "feedback":
            command.add_argument("score", choices=("like", "dislike"))
        if name == "mute":
            command.add_argument("on", choices=("on", "off"))
        if name == "wake-word":
            command.add_argument("model", help="e.g. hey_jarvis, or all")
        if name == "say":
            command.add_argument(
                "--no-start", action="store_true", help="only into a running conversation"
            )
        if name == "status":
            command.add_argument("--json", action="store_true", help="the raw status object")
        command.add_argument("--socket", help="the device's control socket (default: found)")
        command.set_defaults(handler=control_command)


def control_command(args: argparse.Namespace) -> int:
    path = find_socket(args.socket)
    if args.command == "events":
        for line in event_lines(path):
            sys.stdout.write(line)
            sys.stdout.flush()
        return 0
    payload: dict[str, object] = {"command": args.command.replace("-", "_")}
    if args.command in ("say", "context", "announce"):
        payload["text"] = args.text
    if args.command == "start":
        for key in ("first_message", "instructions"):
            if getattr(args, key):
                payload[key] = getattr(args, key)
    if args.command == "say":
        payload["start"] = not args.no_start
    if args.command == "context" and args.context_id:
        payload["id"] = args.context_id
    if args.command in ("approve", "deny") and args.tool_call_id:
        payload["tool_call_id"] = args.tool_call_id
    if args.command == "feedback":
        payload["score"] = args.score
    if args.command == "mute":
        payload["on"] = args.on == "on"
    if args.command == "wake-word":
        payload["model"] = args.model
    reply = request(path, payload)
    if not reply.get("ok"):
        raise ControlClientError(str(reply.get("error", "the device said no")))
    if args.command == "status":
        status = reply["status"]
        if args.json:
            print(json.dumps(status))
        else:
            for key, value in status.items():
                if isinstance(value, dict):
                    value = ", ".join(f"{k} {v}" for k, v in value.items() if v is not None)
                print(f"{key:16} {value}")
    elif reply.get("started"):
        print("started a conversation with it")
    return 0
