"""What every fuzzed HTTP answer must satisfy, whatever was sent."""

from __future__ import annotations

import json
from typing import Any

BOUND_S = 5.0  # a request unanswered after this long counts as a hang
JSON = "application/json"


def content_type(response: Any) -> str:
    """From a ``requests`` response or a schemathesis one (whose headers map to lists)."""
    value = next((v for k, v in response.headers.items() if k.lower() == "content-type"), "")
    return value[0] if isinstance(value, list) else value


def media_type(response: Any) -> str:
    return content_type(response).split(";")[0].strip().lower()


def check_014(response: Any) -> None:
    """014: JSON always; 2xx a document, every error the Error object; 5xx only a deliberate 503."""
    where = f"{response.request.method} {response.request.path_url[:200]} -> {response.status_code}"
    assert response.status_code < 500 or response.status_code == 503, where
    assert media_type(response) == JSON, f"{where}: content type {content_type(response)!r}"
    body = json.loads(response.content)
    if response.status_code >= 400:
        assert isinstance(body, dict) and isinstance(body.get("message"), str), f"{where}: {body!r}"
        assert set(body) <= {"message", "details"}, f"{where}: {body!r}"
        assert "Traceback" not in body["message"], where
        assert isinstance(body.get("details", []), list), where
    else:
        assert isinstance(body, dict), where


def check_020(response: Any) -> None:
    """020: JSON always; errors are problem details whose status is the HTTP status; 2xx JSON arrays, or empty."""
    where = f"{response.request.method} {response.request.path_url[:200]} -> {response.status_code}"
    assert response.status_code < 500 or response.status_code == 503, where
    if response.status_code >= 400:
        assert media_type(response) == JSON, f"{where}: content type {content_type(response)!r}"  # spec Table 1
        body: Any = json.loads(response.content)
        assert isinstance(body, dict) and body.get("status") == response.status_code, f"{where}: {body!r}"
        assert isinstance(body.get("type"), str) and isinstance(body.get("title"), str), where
        assert all(isinstance(v, str) for v in body.get("details", {}).values()), where
        assert b"Traceback" not in response.content, where
    elif response.status_code in (200, 202) and response.content:
        assert media_type(response) == JSON, where
        json.loads(response.content)
