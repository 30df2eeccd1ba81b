"""The failure table, one test per row: the simulator ends a conversation the way the row says
(an ``error`` event with its ``error_type`` and code, a bare close code, a refused key, no
network), and the device plays the row's cue, shows its state, names it in the event line and the
MQTT status, and counts it for the retry as the row says."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest

from agentpi import events as ev
from agentpi.agent.script import (
    CloseScript,
    ErrorScript,
    SimulatorScript,
    SimulatorSettings,
    TurnScript,
)
from agentpi.backoff import FAILURES_FOR_LONGEST_WAIT
from agentpi.mqtt.bridge import MqttBridge
from agentpi.mqtt.settings import MqttConfig
from agentpi.protocol.actions import ConversationEnded
from agentpi.protocol.failures import (
    BY_CLOSE_CODE,
    BY_CONNECT,
    BY_ERROR_TYPE,
    Failure,
    failure_of,
)
from agentpi.states import DeviceState
from tests.helpers import Run, run_conversation
from tests.schema import ASYNCAPI
from tests.speech import save, silence

pytestmark = pytest.mark.realtime

CODES = {
    "max_duration_exceeded": 1000,
    "unknown_websocket_crash": 1011,
    "unknown": 1011,
}
"""The close code each error_type comes with (the definition's ErrorType notes): 1008 for the
contract's refusals, 1002 for the rest."""
REFUSALS_1008 = {
    "invalid_message",
    "telephony_agent_error",
    "mcp_tool_error",
    "mcp_https_error",
    "value_error",
    "missing_fields",
    "override_error",
    "missing_dynamic_variable_transfer",
    "missing_dynamic_variable",
}


def code_of(error_type: str) -> int:
    return CODES.get(error_type, 1008 if error_type in REFUSALS_1008 else 1002)


def test_the_table_names_every_error_type_of_the_definition() -> None:
    import yaml

    schema = yaml.safe_load(ASYNCAPI.read_text())["components"]["schemas"]["ErrorType"]
    assert set(BY_ERROR_TYPE) == set(schema["enum"])


def expected_failures(row: Failure) -> int:
    return {"now": 0, "backoff": 1, "longest": FAILURES_FOR_LONGEST_WAIT}[row.retry]


def check_row(run: Run, row: Failure, line: dict[str, Any]) -> None:
    assert line["failure"] == row.name
    assert run.cues is not None and run.cues.played[-1] == row.cue
    shown = {DeviceState.ERROR.value, DeviceState.OFFLINE.value} & set(run.states())
    assert shown == (set() if row.shows is DeviceState.IDLE else {row.shows.value})
    assert run.device is not None and run.device.retry.failures == expected_failures(row)
    bridge = MqttBridge(MqttConfig(), "hall", "test")
    fields = {key: value for key, value in line.items() if key not in ("t", "event")}
    kind = ev.EVENT_KINDS[line["event"]]
    bridge.on_event(kind(**fields), dict)
    status = json.loads(bridge.status_document({}).payload)
    assert status["failures"] == {row.name: 1}


def ended_by(tmp_path: Path, first_turn: TurnScript) -> Run:
    return run_conversation(
        tmp_path,
        script=SimulatorScript(first_turn=first_turn),
        input_wav=save(tmp_path / "quiet.wav", silence(6.0)),
        cues=True,
    )


@pytest.mark.parametrize("error_type", sorted(BY_ERROR_TYPE))
def test_each_error_type_row(tmp_path: Path, error_type: str) -> None:
    error = ErrorScript(code_of(error_type), error_type, f"simulated {error_type}")
    run = ended_by(tmp_path, TurnScript(error=error))
    line = run.of_kind("conversation_ended")[0]
    assert line["error"] is not None and error_type in line["error"]
    check_row(run, BY_ERROR_TYPE[error_type], line)


@pytest.mark.parametrize("code", [1002, 1008, 1011])
def test_each_bare_close_code_row(tmp_path: Path, code: int) -> None:
    run = ended_by(tmp_path, TurnScript(close=CloseScript(code, "going away")))
    line = run.of_kind("conversation_ended")[0]
    assert line["code"] == code
    check_row(run, BY_CLOSE_CODE[code], line)


def test_the_lost_connection_row() -> None:
    """No close frame at all: the network row (the soak and test_resilience cut real links)."""
    lost = ConversationEnded(None, "no close frame", "server", "connection lost: no close frame")
    row = failure_of(lost)
    assert row is BY_CLOSE_CODE[None] and row.shows is DeviceState.OFFLINE
    assert row.retry == "backoff"


def test_the_refused_key_row(tmp_path: Path) -> None:
    script = SimulatorScript(simulator=SimulatorSettings(require_signed_url=True))
    run = run_conversation(
        tmp_path, script, api_key="sk_wrong", simulator_api_key="sk_right", cues=True
    )
    line = run.of_kind("connect_failed")[0]
    assert "HTTP 401" in line["message"]
    check_row(run, BY_CONNECT[401], line)


def test_the_offline_row(tmp_path: Path) -> None:
    with socket.socket() as hole:  # a port nobody listens on: connection refused
        hole.bind(("127.0.0.1", 0))
        port = hole.getsockname()[1]
    run = run_conversation(
        tmp_path,
        agent_options=lambda _url: {"url": f"ws://127.0.0.1:{port}"},
        cues=True,
    )
    line = run.of_kind("connect_failed")[0]
    check_row(run, BY_CONNECT["offline"], line)
