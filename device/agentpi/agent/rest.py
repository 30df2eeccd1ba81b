"""The agent's own settings over the platform's REST API, with the API key: read them
(``GET /v1/convai/agents/{id}``) and change them (``PATCH``, only the keys given).

Used by ``agentpi doctor`` and ``agentpi agent-setup``, never by a running conversation. Every
request is bounded: one deadline for the whole exchange, a cap on the answer's size and on its
JSON's depth, and no redirect followed (the key would go along to wherever it points).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import quote, urlsplit

from agentpi.errors import AgentpiError
from agentpi.system.https import Answer, AnswerRefused, Unreachable, http_url, request

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
    headers = {"xi-api-key": api_key}
    if data is not None:
        headers["Content-Type"] = "application/json"
    where = f"{method} {urlsplit(url).path}"
    try:
        answer = asyncio.run(request(method, url, headers, MAX_ANSWER_BYTES, timeout_s, data))
        if not 200 <= answer.status < 300:
            raise AgentApiError(f"{where}: {_refusal(answer)}")
        document = answer.json()
    except Unreachable as exc:
        raise AgentApiError(f"{where}: cannot reach {urlsplit(url).netloc}: {exc}") from None
    except AnswerRefused as exc:
        raise AgentApiError(f"{where}: {exc}") from None
    if not isinstance(document, dict):
        raise AgentApiError(f"{where}: the answer is not an agent document")
    return document


def _refusal(answer: Answer) -> str:
    advice = {
        401: "the API key was refused (check ELEVENLABS_API_KEY)",
        403: "the API key may not read or change agents (give it the Agents permission)",
        404: "no such agent (check [agent] agent_id)",
    }
    if answer.status in advice:
        return f"HTTP {answer.status}: {advice[answer.status]}"
    if 300 <= answer.status < 400:
        return f"HTTP {answer.status}: a redirect, not followed (the API key would go with it)"
    try:
        detail = answer.json() if answer.body else None
    except AnswerRefused:
        detail = None
    said = detail.get("detail") if isinstance(detail, dict) else None
    return f"HTTP {answer.status}" + (f": {str(said)[:200]}" if said else "")
