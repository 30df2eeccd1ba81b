"""Client tools: the owner's programs and functions, the device's own, all through the simulator."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path

import pytest

from agentpi.agent.script import SimulatorScript, ToolCallScript, TurnScript
from agentpi.config.document import ConfigError
from agentpi.tools.custom import build_tools
from agentpi.tools.registry import ToolRegistry
from agentpi.tools.settings import CustomToolConfig, ToolsConfig
from tests.helpers import run_conversation

pytestmark = pytest.mark.realtime  # paced audio and timeouts: not under emulation

ECHO_TOOL = """
import json, os, sys
params = json.load(sys.stdin)
print(json.dumps({"got": params, "argv": sys.argv[1:], "tool": os.environ.get("AGENTPI_TOOL"),
                  "key_visible": "ELEVENLABS_API_KEY" in os.environ}))
"""


def program(tmp_path: Path, name: str, body: str) -> Path:
    """An executable script run by this Python, as an owner's tool program would be."""
    path = tmp_path / name
    path.write_text(f"#!{sys.executable}\n{body}")
    path.chmod(0o755)
    return path


def registry_with(tmp_path: Path, **tools: CustomToolConfig) -> ToolRegistry:
    return build_tools(ToolsConfig(custom=tools, max_output_bytes=1024, timeout_s=5))


def run(registry: ToolRegistry, name: str, parameters: dict[str, object]) -> tuple[str, bool]:
    return asyncio.run(registry.run(name, parameters))


def test_a_program_gets_the_parameters_as_json_on_stdin_and_no_shell(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ELEVENLABS_API_KEY", "sk_not_for_tools")
    marker = tmp_path / "pwned"
    tool = program(tmp_path, "echo_tool", ECHO_TOOL)
    registry = registry_with(
        tmp_path, echo=CustomToolConfig(command=(str(tool), f"$(touch {marker})", "; ls"))
    )
    parameters = {"door": "front; rm -rf /", "count": 2, "nested": {"ok": True}}
    result, is_error = run(registry, "echo", parameters)
    assert not is_error, result
    answer = json.loads(result)
    assert answer["got"] == parameters
    assert answer["argv"] == [f"$(touch {marker})", "; ls"]  # handed over as written
    assert answer["tool"] == "echo"
    assert answer["key_visible"] is False  # no agentpi secret in a tool's environment
    assert not marker.exists()


def test_a_failing_program_is_an_error_result_with_its_stderr(tmp_path: Path) -> None:
    tool = program(
        tmp_path, "fail", "import sys\nsys.stderr.write('door is jammed\\n')\nsys.exit(3)"
    )
    result, is_error = run(
        registry_with(tmp_path, door=CustomToolConfig(command=(str(tool),))), "door", {}
    )
    assert is_error
    assert result == "Client tool 'door' failed: exited with status 3: door is jammed"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead too: it only waits for its parent to collect it
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split(") ")[1][0] != "Z"


def wait_until_gone(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.02)
    return False


def test_a_program_that_hangs_is_killed_with_what_it_started(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    tool = program(
        tmp_path,
        "hang",
        "import os, subprocess, time\n"
        "child = subprocess.Popen(['sleep', '60'])\n"
        f"open({str(pids)!r}, 'w').write(f'{{os.getpid()}} {{child.pid}}')\n"
        "time.sleep(60)\n",
    )
    registry = registry_with(tmp_path, slow=CustomToolConfig(command=(str(tool),), timeout_s=1.0))
    started = time.monotonic()
    result, is_error = run(registry, "slow", {})
    assert is_error and result == "Client tool 'slow' timed out after 1 s"
    assert time.monotonic() - started < 3.0
    for pid in map(int, pids.read_text().split()):
        assert wait_until_gone(pid), f"process {pid} outlived the timeout"


def test_a_program_that_prints_too_much_is_cut_off_and_stopped(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    tool = program(
        tmp_path,
        "flood",
        f"import os, sys\nopen({str(pid_file)!r}, 'w').write(str(os.getpid()))\n"
        "while True:\n    sys.stdout.write('x' * 4096)\n",
    )
    registry = registry_with(tmp_path, flood=CustomToolConfig(command=(str(tool),)))
    result, is_error = run(registry, "flood", {})
    assert is_error
    assert "more than the 1024-byte limit" in result and len(result.encode()) <= 1024
    assert wait_until_gone(int(pid_file.read_text()))


def test_python_entry_points_sync_and_async(tmp_path: Path) -> None:
    module = tmp_path / "kiosk_tools.py"
    module.write_text(
        "import asyncio\n"
        "def lookup(p):\n    return {'price': p['item'].upper()}\n"
        "async def slow(p):\n    await asyncio.sleep(0.01)\n    return 'done ' + p['x']\n"
        "def broken(p):\n    raise RuntimeError('printer offline')\n"
    )
    registry = registry_with(
        tmp_path,
        lookup=CustomToolConfig(entry_point=f"{module}:lookup"),
        slow=CustomToolConfig(entry_point=f"{module}:slow"),
        broken=CustomToolConfig(entry_point=f"{module}:broken"),
        stdlib=CustomToolConfig(entry_point="json:dumps"),
    )
    assert run(registry, "lookup", {"item": "tea"}) == ('{"price": "TEA"}', False)
    assert run(registry, "slow", {"x": "y"}) == ("done y", False)
    assert run(registry, "broken", {}) == ("Client tool 'broken' failed: printer offline", True)
    assert run(registry, "stdlib", {"a": 1}) == ('{"a": 1}', False)


@pytest.mark.parametrize(
    ("tool", "expected"),
    [
        (CustomToolConfig(command=("no-such-program-here",)), "not found or not executable"),
        (CustomToolConfig(entry_point="no_such_module_xyz:f"), "cannot load 'no_such_module_xyz'"),
        (CustomToolConfig(entry_point="json:no_such_function"), "has no 'no_such_function'"),
        (CustomToolConfig(entry_point="json:__doc__"), "is not a function"),
    ],
)
def test_a_tool_that_cannot_run_fails_at_start_naming_its_key(
    tool: CustomToolConfig, expected: str
) -> None:
    with pytest.raises(ConfigError, match=expected) as caught:
        build_tools(ToolsConfig(custom={"broken": tool}))
    assert "tools.custom.broken" in str(caught.value)


def tool_turn(name: str, parameters: dict[str, object] | None = None) -> SimulatorScript:
    """The agent calls ``name`` first thing and reads its result out."""
    call = ToolCallScript(name, parameters or {})
    return SimulatorScript(first_turn=TurnScript(tool_call=call, response="Result: {result}"))


def test_a_program_tool_answers_the_agent_through_the_simulator(tmp_path: Path) -> None:
    tool = program(tmp_path, "echo_tool", ECHO_TOOL)
    tools = ToolsConfig(custom={"echo": CustomToolConfig(command=(str(tool),))})
    run = run_conversation(tmp_path, tool_turn("echo", {"room": 4}), sections={"tools": tools})
    [result] = run.record.tool_results.values()
    assert not result.is_error and json.loads(result.result)["got"] == {"room": 4}
    said = run.of_kind("agent_response")[0]["text"]
    assert said.startswith("Result: {") and '"room": 4' in said
    assert run.of_kind("tool_result")[0]["is_error"] is False


def test_set_volume_changes_how_loud_the_agent_is_and_says_so(tmp_path: Path) -> None:
    run = run_conversation(tmp_path, tool_turn("set_volume", {"percent": "40%"}))
    [result] = run.record.tool_results.values()
    assert (result.result, result.is_error) == ("Volume set to 40 %.", False)
    assert run.of_kind("volume")[0]["percent"] == 40.0
    assert run.device is not None and run.device.volume.gain == pytest.approx(0.4)

    bad = run_conversation(tmp_path / "bad", tool_turn("set_volume", {"percent": 900}))
    [refused] = bad.record.tool_results.values()
    assert refused.is_error and "from 0 to 200, got 900" in refused.result
    assert bad.device is not None and bad.device.volume.gain == 1.0


def test_device_status_reports_the_conversation(tmp_path: Path) -> None:
    run = run_conversation(tmp_path, tool_turn("device_status"))
    [result] = run.record.tool_results.values()
    status = json.loads(result.result)
    assert status["in_conversation"] is True
    assert status["conversation_id"] == run.record.conversation_id
    assert status["volume_percent"] == 100.0 and status["device_id"].startswith("agentpi-")


def test_end_conversation_hangs_up_after_the_goodbye_not_after_the_silence(
    tmp_path: Path,
) -> None:
    run = run_conversation(tmp_path, tool_turn("end_conversation"), silence_close_s=30)
    ended = run.of_kind("conversation_ended")[0]
    assert ended["reason"] == "device ended the conversation" and ended["error"] is None
    assert run.record.close_code == 1000 and run.record.closed_by == "client"
    # the goodbye was played out in full, then the line closed well before 30 s of silence
    said = run.record.turns[0]
    assert said.interrupted_at is None and said.samples_sent == said.audio_samples
    assert ended["duration_s"] < 15


def test_a_program_gets_an_allow_listed_environment_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTPI_MQTT_PASSWORD", "mqtt-secret")  # the deny-list missed this one
    monkeypatch.setenv("SOMETHING_ELSE", "from the service's start")
    monkeypatch.setenv("TZ", "Europe/Vienna")
    show = program(tmp_path, "show_env", "import json, os\nprint(json.dumps(dict(os.environ)))")
    result, is_error = run(
        registry_with(tmp_path, env=CustomToolConfig(command=(str(show),))), "env", {}
    )
    assert not is_error, result
    seen = json.loads(result)
    assert "mqtt-secret" not in result and "SOMETHING_ELSE" not in seen
    assert seen["TZ"] == "Europe/Vienna" and seen["AGENTPI_TOOL"] == "env" and "PATH" in seen


def test_a_timeout_kills_what_the_program_left_behind(tmp_path: Path) -> None:
    """`sh -c "sleep 600 & echo started"`: the shell exits, its child keeps the output open; the
    tool times out, and the child goes with it."""
    pid_file = tmp_path / "child.pid"
    script = f"sleep 600 & echo $! > {pid_file}; echo started"
    tools = ToolsConfig(
        custom={"bg": CustomToolConfig(command=("/bin/sh", "-c", script))}, timeout_s=1
    )
    result, is_error = run(build_tools(tools), "bg", {})
    assert is_error and "timed out" in result
    child = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _alive(child):
        time.sleep(0.05)
    assert not _alive(child)


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for its parent counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_a_tool_anyone_may_write_is_refused_at_start(tmp_path: Path) -> None:
    tool = program(tmp_path, "open_door", "print('opened')")
    tool.chmod(0o777)
    with pytest.raises(ConfigError, match=r"writable by anyone: chmod o-w .*open_door"):
        registry_with(tmp_path, door=CustomToolConfig(command=(str(tool),)))
    module = tmp_path / "tools.py"
    module.write_text("def price(parameters):\n    return 1\n")
    module.chmod(0o666)
    with pytest.raises(
        ConfigError, match=r"tools\.custom\.price\.entry_point: the file .* chmod o-w"
    ):
        registry_with(tmp_path, price=CustomToolConfig(entry_point=f"{module}:price"))
    module.chmod(0o644)
    assert registry_with(tmp_path, price=CustomToolConfig(entry_point=f"{module}:price"))
