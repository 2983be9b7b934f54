"""Raw mutations against the gateway's 014 and 020 listeners: bytes no schema would generate.

Random and truncated bodies, wrong JSON types, hostile nesting, huge numbers, duplicate members, odd
percent-encoded path segments, repeated query parameters and unknown methods, over real mutual TLS.
Only documented 4xx answers (or a deliberate 503 with its error body) are acceptable, within ``BOUND_S``.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.http_checks import BOUND_S, check_014, check_020
from tests.support.threaded_testbed import ThreadedTestbed

PATHS_014 = [
    "/api/v1/keys/{}/status",
    "/api/v1/keys/{}/enc_keys",
    "/api/v1/keys/{}/dec_keys",
    "/openapi.json",
    "/api/v1/keys/{}",
    "/api/v1/{}/enc_keys",
    "/{}",
]
PATHS_020 = [
    "/kmapi/versions",
    "/kmapi/v1/ext_keys",
    "/kmapi/v1/ext_keys/ack",
    "/kmapi/v1/ext_keys/void",
    "/kmapi/v1/{}",
    "/kmapi/{}/ext_keys",
    "/openapi.json",
    "/{}",
]
NAMES = [
    "number",
    "size",
    "key_ID",
    "keys",
    "key_id",
    "value",
    "initiator_sae_id",
    "target_sae_ids",
    "ack_callback_url",
    "extension_mandatory",
    "extension_optional",
    "key_IDs",
    "key_ids",
    "all_confirmation",
    "additional_slave_SAE_IDs",
    "key_id_container",
    "ack_status",
    "extension",
]

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.text(max_size=40),
    st.sampled_from(
        [
            "SAE-R1-A",
            "SAE-R3-A",
            "GW1",
            "00000000-0000-0000-0000-000000000000",
            "https://127.0.0.1:9/x",
            "AAAA",
            "relayed",
            "E1_x",
        ]
    ),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(st.one_of(st.sampled_from(NAMES), st.text(max_size=12)), children, max_size=6),
    ),
    max_leaves=30,
)


@st.composite
def bodies(draw: st.DrawFn) -> bytes | None:
    kind = draw(
        st.sampled_from(
            ["none", "bytes", "json", "object", "nested", "huge", "duplicate", "truncated", "constant", "surrogate"]
        )
    )
    if kind == "none":
        return None
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    if kind == "json":
        return json.dumps(draw(json_values)).encode()
    if kind == "object":
        return json.dumps(draw(st.dictionaries(st.sampled_from(NAMES), json_values, max_size=8))).encode()
    if kind == "nested":
        depth = draw(st.integers(min_value=50, max_value=200_000))
        opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
        return (opener * depth + "1" + closer * depth).encode()
    if kind == "huge":
        digits = draw(st.integers(min_value=20, max_value=60_000))
        return f'{{"{draw(st.sampled_from(NAMES))}": {"9" * digits}}}'.encode()
    if kind == "duplicate":
        name = draw(st.sampled_from(NAMES))
        return f'{{"{name}": 1, "{name}": 2}}'.encode()
    if kind == "truncated":
        text = json.dumps(draw(st.dictionaries(st.sampled_from(NAMES), json_values, min_size=1, max_size=4)))
        return text[: draw(st.integers(min_value=0, max_value=max(0, len(text) - 1)))].encode()
    if kind == "constant":
        return draw(st.sampled_from([b'{"number": NaN}', b'{"size": Infinity}', b"[-Infinity]", b"\xef\xbb\xbf{}"]))
    return b'{"keys": "\\ud800"}'


segments = st.one_of(
    st.sampled_from(
        [
            "SAE-R1-A",
            "SAE-R2-A",
            "SAE-R3-A",
            "GW1",
            "GW2",
            "",
            "%00",
            "%2F",
            "..",
            "%2e%2e",
            "%ff",
            "%",
            "%zz",
            "SAE%20%234",
            "a" * 300,
            "%E2%80%AE",
            "%0a",
            "%09",
        ]
    ),
    st.text(min_size=1, max_size=40).map(lambda text: quote(text, safe="")),
)
queries = st.lists(
    st.tuples(
        st.sampled_from(NAMES + ["", "x"]),
        st.one_of(
            st.text(max_size=20),
            st.sampled_from(
                [
                    "1",
                    "-1",
                    "0",
                    "256",
                    "99999999999999999999999",
                    "1e3",
                    "0x10",
                    " 1",
                    "true",
                    "%00",
                    "00000000-0000-0000-0000-000000000000",
                ]
            ),
        ),
    ),
    max_size=4,
)
methods = st.sampled_from(["GET", "POST", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"])
content_types = st.sampled_from(
    [
        None,
        "application/json",
        "text/plain",
        "application/json; charset=latin-1",
        "multipart/form-data; boundary=x",
        "application/x-www-form-urlencoded",
    ]
)


def fuzz(
    bed: ThreadedTestbed, site: str, gateway: str, entity: str, paths: list[str], check: Any, examples: int
) -> None:
    base = bed.url(gateway, site)
    session = bed.session(entity)

    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(
        method=methods,
        template=st.sampled_from(paths),
        segment=segments,
        query=queries,
        body=bodies(),
        content_type=content_types,
    )
    def run(
        method: str,
        template: str,
        segment: str,
        query: list[tuple[str, str]],
        body: bytes | None,
        content_type: str | None,
    ) -> None:
        headers = {} if content_type is None else {"Content-Type": content_type}
        response = session.request(
            method, base + template.format(segment), params=query, data=body, headers=headers, timeout=BOUND_S
        )
        if method == "HEAD":  # no body by definition; the status still must be a documented one
            assert response.status_code < 500 or response.status_code == 503
            return
        check(response)

    run()
    assert session.get(base + "/openapi.json", timeout=BOUND_S).status_code == 200  # still serving


def test_raw_mutations_014(bed: ThreadedTestbed) -> None:
    fuzz(bed, "etsi014", "GW1", "SAE-R1-A", PATHS_014, check_014, 200)


def test_raw_mutations_020(bed: ThreadedTestbed) -> None:
    fuzz(bed, "etsi020", "GW2", "GW1", PATHS_020, check_020, 200)


def test_raw_mutations_014_kms_simulator(bed: ThreadedTestbed) -> None:
    """The vendor KMS simulator shares the 014 front end; GW1 is an SAE of KME-R1-A."""
    site = bed.testbed.kms["KMS-R1"].kme_sites["KME-R1-A"]
    base = f"https://localhost:{site.port}"
    session = bed.session("GW1")

    @settings(max_examples=100, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(method=methods, template=st.sampled_from(PATHS_014), segment=segments, query=queries, body=bodies())
    def run(method: str, template: str, segment: str, query: list[tuple[str, str]], body: bytes | None) -> None:
        response = session.request(method, base + template.format(segment), params=query, data=body, timeout=BOUND_S)
        if method != "HEAD":
            check_014(response)

    run()


@pytest.mark.slow
def test_raw_mutations_long(bed: ThreadedTestbed) -> None:
    fuzz(bed, "etsi014", "GW1", "SAE-R1-A", PATHS_014, check_014, 3000)
    fuzz(bed, "etsi020", "GW2", "GW1", PATHS_020, check_020, 3000)
