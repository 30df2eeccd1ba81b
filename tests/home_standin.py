"""A small stand-in for Home Assistant's REST API, for the everyday tests (``make ha-check``
runs Home Assistant itself): bearer token, states, services, the area template."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TOKEN = "good-token"
AREAS = {"light.kitchen": "Kitchen", "switch.kettle": "Kitchen", "lock.front_door": "Hall"}


def initial_states() -> dict[str, dict[str, Any]]:
    def state(entity_id: str, value: str, name: str, **attributes: Any) -> dict[str, Any]:
        return {
            "entity_id": entity_id,
            "state": value,
            "attributes": {"friendly_name": name, **attributes},
        }

    return {
        "light.kitchen": state("light.kitchen", "off", "Kitchen light", brightness=None),
        "switch.kettle": state("switch.kettle", "off", "Kettle"),
        "lock.front_door": state("lock.front_door", "locked", "Front door"),
        "sensor.outside": state("sensor.outside", "4.5", "Outside", unit_of_measurement="C"),
    }


class HomeStandIn:
    def __init__(self) -> None:
        self.states = initial_states()
        self.calls: list[tuple[str, str, dict[str, Any]]] = []
        self.delay_s = 0.0
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                standin.answer(self, "GET", b"")

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                standin.answer(self, "POST", self.rfile.read(length))

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> HomeStandIn:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def answer(self, handler: BaseHTTPRequestHandler, method: str, body: bytes) -> None:
        time.sleep(self.delay_s)
        status, payload = self.route(handler, method, body)
        data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def route(self, handler: BaseHTTPRequestHandler, method: str, body: bytes) -> tuple[int, Any]:
        if handler.headers.get("Authorization") != f"Bearer {TOKEN}":
            return 401, {"message": "Unauthorized"}
        path = handler.path
        if method == "GET" and path == "/api/":
            return 200, {"message": "API running."}
        if method == "GET" and path == "/api/states":
            return 200, list(self.states.values())
        if method == "GET" and path.startswith("/api/states/"):
            state = self.states.get(path.removeprefix("/api/states/"))
            return (200, state) if state else (404, {"message": "Entity not found."})
        if method == "POST" and path == "/api/template":
            ids = json.loads(body)["variables"]["ids"]
            return 200, "".join(f"{e}={AREAS.get(e, '')}\n" for e in ids)
        if method == "POST" and path.startswith("/api/services/"):
            domain, _, service = path.removeprefix("/api/services/").partition("/")
            data = json.loads(body)
            self.calls.append((domain, service, data))
            state = self.states.get(data.get("entity_id", ""))
            if state is None:
                return 200, []
            new = {"turn_on": "on", "turn_off": "off"}.get(service)
            if service == "toggle":
                new = "off" if state["state"] == "on" else "on"
            if new is None:
                return 400, {"message": f"Service {domain}.{service} not found."}
            state["state"] = new
            if "brightness_pct" in data:
                state["attributes"]["brightness"] = round(data["brightness_pct"] * 2.55)
            return 200, [state]
        return 404, {"message": "Not found"}
