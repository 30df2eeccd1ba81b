"""The agent's own settings over the platform's REST API, with the API key: read them
(``GET /v1/convai/agents/{id}``) and change them (``PATCH``, only the keys given).

Used by ``agentpi doctor`` and ``agentpi agent-setup``, never by a running conversation. Every
request is bounded: one deadline for the whole exchange, a cap on the answer's size and on its
JSON's depth, and no redirect followed (the key would go along to wherever it points).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote, urlsplit

from agentpi import bounded_json
from agentpi.agent.https import AnswerRefused, http_url, open_url, read_json
from agentpi.errors import AgentpiError

JsonDict = dict[str, Any]

AGENTS_PATH = "/v1/convai/agents/"
MAX_ANSWER_BYTES = 2 * 1024 * 1024
"""An agent document with a long prompt and many tools is tens of KB; more is not an agent."""


class AgentApiError(AgentpiError):
    """The agent's settings could not be read or changed; the message says why (no key)."""


def agent_api_url(base_url: str, agent_id: str) -> str:
    """``wss://api.elevenlabs.io`` -> ``https://api.elevenlabs.io/v1/convai/agents/<id>``."""
    return http_url(base_url, AGENTS_PATH + quote(agent_id, safe=""))


def read_agent(base_url: str, agent_id: str, api_key: str, timeout_s: float = 10.0) -> JsonDict:
    return _request("GET", agent_api_url(base_url, agent_id), api_key, None, timeout_s)


def update_agent(
    base_url: str, agent_id: str, api_key: str, change: JsonDict, timeout_s: float = 10.0
) -> JsonDict:
    """Apply ``change`` (a part of the agent document); the agent as it now stands."""
    return _request("PATCH", agent_api_url(base_url, agent_id), api_key, change, timeout_s)


def _request(
    method: str, url: str, api_key: str, body: JsonDict | None, timeout_s: float
) -> JsonDict:
    data = None if body is None else json.dumps(body).encode()
    headers = {"xi-api-key": api_key, "Accept": "application/json"}
    if data is not None:
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    where = f"{method} {urlsplit(url).path}"
    deadline = time.monotonic() + timeout_s
    try:
        with open_url(request, timeout_s) as response:
            document = read_json(response, MAX_ANSWER_BYTES, deadline)
    except urllib.error.HTTPError as exc:
        raise AgentApiError(f"{where}: {_refusal(exc)}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise AgentApiError(f"{where}: cannot reach {urlsplit(url).netloc}: {reason}") from None
    except AnswerRefused as exc:
        raise AgentApiError(f"{where}: {exc}") from None
    if not isinstance(document, dict):
        raise AgentApiError(f"{where}: the answer is not an agent document")
    return document


def _refusal(exc: urllib.error.HTTPError) -> str:
    advice = {
        401: "the API key was refused (check ELEVENLABS_API_KEY)",
        403: "the API key may not read or change agents (give it the Agents permission)",
        404: "no such agent (check [agent] agent_id)",
    }
    if exc.code in advice:
        return f"HTTP {exc.code}: {advice[exc.code]}"
    if 300 <= exc.code < 400:
        return f"HTTP {exc.code}: a redirect, not followed (the API key would go with it)"
    try:
        detail = bounded_json.loads(exc.read(4096) or b"null", 4096)
    except (ValueError, OSError):
        detail = None
    said = detail.get("detail") if isinstance(detail, dict) else None
    return f"HTTP {exc.code}" + (f": {str(said)[:200]}" if said else "")
