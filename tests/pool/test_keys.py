"""Key names: one hash slot per store, unambiguous for odd IDs, nothing secret in them."""

from __future__ import annotations

import pytest
from redis.crc import key_slot

from relay.pool.keys import Keyspace, StoreKeys


def _slots(names: StoreKeys, key_id: str) -> set[int]:
    return {key_slot(name.encode()) for name in (names.index, names.retired, names.material(key_id))}


@pytest.mark.parametrize("sae", ["SAE-1", "SAE #4", "a:b", "{x}", "b}c{", "ü"])
def test_every_name_of_a_store_is_in_one_slot(sae: str) -> None:
    space = Keyspace("gw1")
    key_id = "7c2d4b2e-5d3c-4c1e-9d8f-0a1b2c3d4e5f"
    for names in (space.qkd_pool(sae, "master"), space.ready(sae, "SAE-2"), space.waiting_for_slaves(sae)):
        assert len(_slots(names, key_id)) == 1


def test_ids_are_encoded_so_names_cannot_collide() -> None:
    space = Keyspace()
    assert space.ready("a:b", "c") != space.ready("a", "b:c")
    assert space.qkd_pool("L}1", "master").index == "qkdr:{qkd:L%7D1:master}:idx"
    assert space.waiting_for_slaves("SAE #4").material_prefix == "qkdr:{slave:SAE%20%234}:k:"


def test_stores_of_different_links_and_lanes_are_distinct() -> None:
    space = Keyspace()
    names = {space.qkd_pool("L1", "master"), space.qkd_pool("L1", "slave"), space.qkd_pool("L2", "master")}
    assert len({n.index for n in names}) == 3


@pytest.mark.parametrize("prefix", ["", "a:b", "{a}", "a b"])
def test_prefix_must_be_a_plain_token(prefix: str) -> None:
    with pytest.raises(ValueError):
        Keyspace(prefix)


@pytest.mark.parametrize("key_id", ["", "a:b", "x}", "k" * 129, "a b"])
def test_key_ids_that_could_break_names_are_refused(key_id: str) -> None:
    with pytest.raises(ValueError):
        Keyspace().ready("A", "B").material(key_id)
