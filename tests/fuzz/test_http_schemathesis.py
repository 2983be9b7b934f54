"""Schemathesis against the gateway's real 014 and 020 listeners, from the documents they serve.

Each server's ``GET /openapi.json`` is fetched over mutual TLS and handed to schemathesis, which generates
requests that fit the schemas (positive) and requests that break them (negative). Every answer must be
documented (status, content type, body schema), never a 5xx other than the deliberate 503 with its
error body, and come back within ``BOUND_S``; afterwards the gateway must still serve a real key exchange.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from tests.support.http_checks import BOUND_S, check_014, check_020
from tests.support.threaded_testbed import ThreadedTestbed, assert_still_relays

CHECKS = [status_code_conformance, content_type_conformance, response_schema_conformance, negative_data_rejection]
MODES = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
CLOSED_CALLBACK = "https://127.0.0.1:9/kmapi/v1/ext_keys/ack"  # discard port: nothing listens, refused at once


def _settings(examples: int) -> Any:
    return settings(
        max_examples=examples, deadline=None, database=None, derandomize=False, suppress_health_check=list(HealthCheck)
    )


def _operations(session: requests.Session, base: str) -> st.SearchStrategy[Any]:
    response = session.get(base + "/openapi.json", timeout=BOUND_S)
    assert response.status_code == 200
    schema = schemathesis.openapi.from_dict(response.json())
    strategies = [
        operation.ok().as_strategy(generation_mode=mode) for operation in schema.get_all_operations() for mode in MODES
    ]
    return st.one_of(strategies)


def _positive(case: Any) -> bool:
    """Overrides that make a value valid are only for positive cases: a negative one must stay invalid."""
    meta = getattr(case, "_meta", None)
    return meta is not None and meta.generation.mode is GenerationMode.POSITIVE


def fuzz_014(bed: ThreadedTestbed, examples: int) -> None:
    base = bed.url("GW1", "etsi014")
    session = bed.session("SAE-R1-A")
    saes = sorted(sae.id for sae in bed.testbed.topology.saes)

    seen: Counter[tuple[str, int]] = Counter()

    @_settings(examples)
    @given(case=_operations(session, base), sae=st.sampled_from([None, *saes]))
    def run(case: Any, sae: str | None) -> None:
        # a known SAE reaches the backend, not just the 401
        if sae is not None and case.path_parameters and _positive(case):
            case.path_parameters = {name: sae for name in case.path_parameters}
        response = case.call(base_url=base, session=session, timeout=BOUND_S, verify=session.verify, cert=session.cert)
        check_014(response)
        case.validate_response(response, checks=CHECKS)
        seen[(case.operation.label, response.status_code)] += 1

    _run_and_check(bed, run, seen)


def _run_and_check(bed: ThreadedTestbed, run: Callable[[], None], seen: Counter[tuple[str, int]]) -> None:
    """Run the generated cases, then require that they got past the parsers and that the gateway relays."""
    run()
    print(sorted(seen.items()))
    statuses = {status for _, status in seen}
    assert {200, 400} <= statuses, seen  # the fuzzer got past the parsers, and was refused by them
    assert_still_relays(bed)


def fuzz_020(bed: ThreadedTestbed, examples: int) -> None:
    base = bed.url("GW2", "etsi020")
    session = bed.session("GW1")
    saes = sorted(sae.id for sae in bed.testbed.topology.saes)

    seen: Counter[tuple[str, int]] = Counter()

    @_settings(examples)
    @given(case=_operations(session, base), target=st.sampled_from([None, *saes]))
    def run(case: Any, target: str | None) -> None:
        body = case.body
        if isinstance(body, dict):
            url = body.get("ack_callback_url")
            if isinstance(url, str) and url.startswith("https://") and len(url) <= 1024 and " " not in url:
                body["ack_callback_url"] = CLOSED_CALLBACK  # never let the gateway dial a generated host
            if target is not None and isinstance(body.get("target_sae_ids"), list) and _positive(case):
                body["target_sae_ids"] = [target]
        response = case.call(base_url=base, session=session, timeout=BOUND_S, verify=session.verify, cert=session.cert)
        check_020(response)
        case.validate_response(response, checks=CHECKS)
        seen[(case.operation.label, response.status_code)] += 1

    _run_and_check(bed, run, seen)


def test_openapi_document_is_served_to_authenticated_callers(bed: ThreadedTestbed) -> None:
    for site, entity, title in (("etsi014", "SAE-R1-A", "014"), ("etsi020", "GW1", "020")):
        response = bed.session(entity).get(bed.url("GW2", site) + "/openapi.json", timeout=BOUND_S)
        assert response.status_code == 200 and response.headers["Content-Type"].startswith("application/json")
        assert response.json()["openapi"] == "3.1.0" and title in response.json()["info"]["title"]
    # the 014 document is for SAEs, the 020 one for KMEs and gateways
    assert bed.session("KME-R1-A").get(bed.url("GW2", "etsi014") + "/openapi.json", timeout=BOUND_S).status_code == 401
    assert bed.session("SAE-R2-A").get(bed.url("GW2", "etsi020") + "/openapi.json", timeout=BOUND_S).status_code == 401


def test_schemathesis_014_northbound(bed: ThreadedTestbed) -> None:
    fuzz_014(bed, 150)


def test_schemathesis_020(bed: ThreadedTestbed) -> None:
    fuzz_020(bed, 150)


@pytest.mark.slow
def test_schemathesis_014_northbound_long(bed: ThreadedTestbed) -> None:
    fuzz_014(bed, 2000)


@pytest.mark.slow
def test_schemathesis_020_long(bed: ThreadedTestbed) -> None:
    fuzz_020(bed, 2000)
