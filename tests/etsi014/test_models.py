"""The 014 data formats against the spec's own examples (clause 6), and the round trips our code relies on."""

from __future__ import annotations

import pytest

from relay.etsi014.errors import ValidationError
from relay.etsi014.models import Error, KeyContainer, KeyIds, KeyLimits, KeyRequest, Status

SPEC_STATUS = {
    "source_KME_ID": "AAAABBBBCCCCDDDD",
    "target_KME_ID": "EEEEFFFFGGGGHHHH",
    "master_SAE_ID": "IIIIJJJJKKKKLLLL",
    "slave_SAE_ID": "MMMMNNNNOOOOPPPP",
    "key_size": 352,
    "stored_key_count": 25000,
    "max_key_count": 100000,
    "max_key_per_request": 128,
    "max_key_size": 1024,
    "min_key_size": 64,
    "max_SAE_ID_count": 0,
}
SPEC_KEYS = {
    "keys": [
        {"key_ID": "bc490419-7d60-487f-adc1-4ddcc177c139", "key": "wHHVxRwDJs3/bXd38GHP3oe4svTuRpZS0yCC7x4Ly+s="},
        {"key_ID": "0a782fb5-3434-48fe-aa4d-14f41d46cf92", "key": "OeGMPxh1+2RpJpNCYixWHFLYRubpOKCw94FcCI7VdJA="},
    ]
}
SPEC_REQUEST = {
    "number": 3,
    "size": 1024,
    "additional_slave_SAE_IDs": ["ABCDEFG", "HIJKLMN"],
    "extension_mandatory": [{"abc_route_type": "direct"}, {"abc_transfer_method": "qkd"}],
    "extension_optional": [{"abc_max_age": 30000}],
}
LIMITS = KeyLimits(key_size=256, min_key_size=64, max_key_size=1024, max_key_per_request=8, max_sae_id_count=2)


def test_spec_examples_round_trip_unchanged() -> None:
    assert Status.from_json(SPEC_STATUS).to_json() == SPEC_STATUS
    assert KeyContainer.from_json(SPEC_KEYS).to_json() == SPEC_KEYS
    assert KeyRequest.from_json(SPEC_REQUEST).to_json() == SPEC_REQUEST
    key_ids = {"key_IDs": [{"key_ID": "bc490419-7d60-487f-adc1-4ddcc177c139"}]}
    assert KeyIds.from_json(key_ids).to_json() == key_ids
    assert len(KeyContainer.from_json(SPEC_KEYS).keys[0].key) == 32


def test_status_with_a_missing_or_mistyped_field_is_refused() -> None:
    for name in SPEC_STATUS:
        with pytest.raises(ValidationError, match=name):
            Status.from_json({k: v for k, v in SPEC_STATUS.items() if k != name})
    with pytest.raises(ValidationError, match="key_size"):
        Status.from_json({**SPEC_STATUS, "key_size": "352"})


@pytest.mark.parametrize(
    "container",
    [
        {"keys": [{"key_ID": "not-a-uuid", "key": "AAAA"}]},
        {"keys": [{"key_ID": "bc490419-7d60-487f-adc1-4ddcc177c139", "key": "not base64!"}]},
        {"Keys": []},
        {"keys": [{"key_ID": "bc490419-7d60-487f-adc1-4ddcc177c139"}]},
    ],
)
def test_malformed_key_containers_are_refused(container: dict) -> None:
    with pytest.raises(ValidationError):
        KeyContainer.from_json(container)


def test_key_ids_are_canonicalised_so_lookups_match() -> None:
    parsed = KeyIds.from_json({"key_IDs": [{"key_ID": "BC490419-7D60-487F-ADC1-4DDCC177C139"}]})
    assert parsed.key_ids == ("bc490419-7d60-487f-adc1-4ddcc177c139",)


def test_get_form_is_only_for_number_and_size() -> None:
    assert KeyRequest(number=2, size=256).fits_get_form()
    assert not KeyRequest.from_json(SPEC_REQUEST).fits_get_form()
    assert KeyRequest.from_query({"number": "2", "size": "512"}) == KeyRequest(number=2, size=512)


def test_limits_apply_defaults_and_bounds() -> None:
    assert LIMITS.resolve(KeyRequest(), "A", "B") == (1, 256)
    assert LIMITS.resolve(KeyRequest(number=8, size=1024, additional_slave_sae_ids=("C", "D")), "A", "B") == (8, 1024)
    refusals = [
        (KeyRequest(number=9), "number must be between"),
        (KeyRequest(size=260), "size shall be a multiple of 8"),
        (KeyRequest(size=2048), "size must be between"),
        (KeyRequest(additional_slave_sae_ids=("C", "D", "E")), "max_SAE_ID_count is 2"),
        (KeyRequest(additional_slave_sae_ids=("C", "C")), "more than once"),
        (KeyRequest(additional_slave_sae_ids=("B",)), "must not repeat"),
        (KeyRequest(additional_slave_sae_ids=(" ",)), "blank"),
    ]
    for request, message in refusals:
        with pytest.raises(ValidationError, match=message):
            LIMITS.resolve(request, "A", "B")


def test_error_body_keeps_details_optional() -> None:
    assert Error("boom").to_json() == {"message": "boom"}
    detailed = {"message": "m", "details": [{"extension_mandatory_unsupported": "x"}]}
    assert Error.from_json(detailed).to_json() == detailed
