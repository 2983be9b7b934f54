"""Structured JSON logs: one object per line, context fields from ``extra``, and never key material."""

from __future__ import annotations

import base64
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from relay.cli import _build_parser
from relay.domain import Key
from relay.etsi014.models import KeyRequest
from relay.gateway.config import GatewaySettings
from relay.observability.logs import JsonFormatter, configure_logging
from relay.pki.layout import KeyDirectory
from relay.pool import QkdPool
from tests.support.local_testbed import running_testbed
from tests.support.redis_servers import RedisServer


def _record(message: str, *args: object, exc: BaseException | None = None, **extra: Any) -> str:
    logger = logging.getLogger("tests.observability.sample")
    exc_info = (type(exc), exc, exc.__traceback__) if exc else None
    record = logger.makeRecord(logger.name, logging.WARNING, __file__, 1, message, args, exc_info, extra=extra)
    return JsonFormatter({"service": "GW1"}).format(record)


def test_a_line_is_one_json_object_with_the_standard_and_extra_fields() -> None:
    line = _record("transfer %s failed", "ab" * 16, transfer_id="ab" * 16, link="QKD-GW1-GW2", hop=1)
    assert "\n" not in line
    document = json.loads(line)
    assert document["level"] == "WARNING" and document["logger"] == "tests.observability.sample"
    assert document["message"] == f"transfer {'ab' * 16} failed"
    assert document["time"].endswith("Z") and "T" in document["time"]
    assert (document["transfer_id"], document["link"], document["hop"], document["service"]) == (
        "ab" * 16,
        "QKD-GW1-GW2",
        1,
        "GW1",
    )


def test_bytes_are_never_rendered_and_tracebacks_stay_on_one_line() -> None:
    secret = bytes(range(32))
    try:
        raise ValueError("boom")
    except ValueError as error:
        line = _record("oops", exc=error, key=secret, keys=[secret])
    document = json.loads(line)
    assert document["key"] == "<32 bytes>" and document["keys"] == ["<32 bytes>"]
    assert "ValueError: boom" in document["exception"] and "\n" not in line
    assert secret.hex() not in line and base64.b64encode(secret).decode() not in line


def test_cli_log_format_option(capsys: pytest.CaptureFixture[str]) -> None:
    args = _build_parser().parse_args(["gateway", "run", "--id", "GW1", "--log-format", "json"])
    assert args.log_format == "json" and args.log_level == "INFO"
    stream = io.StringIO()
    configure_logging(args.log_format, args.log_level, stream=stream)  # the root logger is restored afterwards
    logging.getLogger("relay.test").info("hello", extra={"gateway": "GW1"})
    document = json.loads(stream.getvalue())
    assert document["message"] == "hello" and document["gateway"] == "GW1"
    with pytest.raises(SystemExit):
        _build_parser().parse_args(["--log-format", "xml", "gateway", "run", "--id", "GW1"])


@pytest.fixture
def json_debug_log() -> Iterator[io.StringIO]:
    """Everything logged (DEBUG and up, every logger) as JSON lines."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def _encodings(secret: bytes) -> list[str]:
    return [
        secret.hex(),
        secret.hex().upper(),
        base64.b64encode(secret).decode(),
        base64.urlsafe_b64encode(secret).decode(),
        base64.b64encode(secret).decode().rstrip("="),
        repr(secret)[2:-1],
    ]


async def test_a_real_relay_logs_transfer_ids_and_never_key_material(
    topology_keys: KeyDirectory,
    private_redis: RedisServer,
    json_debug_log: io.StringIO,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    qkd_keys: list[bytes] = []  # every QKD key stored in or taken from any lane during the test
    original_put, original_take, original_named = QkdPool.put, QkdPool.take, QkdPool.take_named

    async def put(self: QkdPool, keys: list[Key]) -> Any:
        qkd_keys.extend(key.key for key in keys)
        return await original_put(self, keys)

    async def take(self: QkdPool, n: int) -> Any:
        taken = await original_take(self, n)
        qkd_keys.extend(key.key for key in taken)
        return taken

    async def take_named(self: QkdPool, key_ids: list[str]) -> Any:
        taken = await original_named(self, key_ids)
        qkd_keys.extend(key.key for key in taken)
        return taken

    monkeypatch.setattr(QkdPool, "put", put)
    monkeypatch.setattr(QkdPool, "take", take)
    monkeypatch.setattr(QkdPool, "take_named", take_named)

    async with running_testbed(topology_keys, private_redis.url, GatewaySettings(prerelay=False)) as testbed:
        relayed: list[Key] = []
        async with testbed.sae("SAE-R1-A") as master, testbed.sae("SAE-R3-A") as slave:
            issued = await master.get_key("SAE-R3-A", KeyRequest(number=3))
            await slave.get_key_with_ids("SAE-R1-A", [k.key_id for k in issued.keys])
            relayed += issued.keys
        async with testbed.sae("SAE-R2-A") as master, testbed.sae("SAE-R1-B") as slave:
            issued = await master.get_key("SAE-R1-B", KeyRequest(number=2))
            await slave.get_key_with_ids("SAE-R2-A", [k.key_id for k in issued.keys])
            relayed += issued.keys
        storage_keys = [(topology_keys.root / "storage" / f"{gw}.key").read_bytes() for gw in testbed.gateways]

    text = json_debug_log.getvalue()
    lines = [json.loads(line) for line in text.splitlines()]
    assert lines and all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    assert qkd_keys and len(relayed) == 5 and len(storage_keys) == 3
    for secret in [*(key.key for key in relayed), *storage_keys, *qkd_keys]:
        for form in _encodings(secret):
            assert form not in text, f"key material leaked into the logs ({form[:8]}...)"

    transfers = [line for line in lines if "transfer_id" in line]
    assert transfers, "no log line carries a transfer_id"
    assert all(len(line["transfer_id"]) == 32 and int(line["transfer_id"], 16) >= 0 for line in transfers)
    done = {line["key_id"]: line["transfer_id"] for line in transfers if line.get("key_id")}
    assert {key.key_id for key in relayed} <= set(done)  # each relayed key's transfer can be traced
    frames = [line for line in lines if "frame_id" in line]
    assert all(len(line["frame_id"]) == 32 and line["transfer_ids"] for line in frames)
    for key in relayed:  # and the frames that carried it, at both ends of each hop, name its transfer ID
        hops = [line for line in frames if done[key.key_id] in line["transfer_ids"] and "neighbour" in line]
        assert hops
