"""``qkd-relay keys init``: certificates for every entity of a topology, under one private CA, and an
ML-DSA identity per gateway (``identities/``, see ``relay.crypto.identity``), and the Redis users: a
password per gateway and for the admin, an ACL file per region (``redis/``, see ``relay.pki.redis_access``).

Idempotent: an existing CA and existing certificates are kept (so running it twice does not invalidate
what running services loaded), unless a certificate no longer fits its profile
(:func:`relay.pki.certs.fits_profile`: other key usages, a longer lifetime than a leaf may have, or due
for renewal), which is re-issued under the same CA; ``force`` regenerates everything.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from relay.crypto.identity import PRIVATE_SUFFIX, generate_identity
from relay.pki.certs import create_ca, entity_dns_name, fits_profile, issue, load_identity, write_identity
from relay.pki.layout import KeyDirectory
from relay.pki.redis_access import REDIS_CLIENT_ENTITY, provision_redis_users, redis_server_entity
from relay.topology import Topology, TopologyError


@dataclass(frozen=True)
class ProvisionReport:
    directory: KeyDirectory
    created: tuple[str, ...]
    kept: tuple[str, ...]


def entity_roles(topology: Topology) -> dict[str, tuple[str, ...]]:
    """Every entity that needs a certificate, with the roles its certificate names.

    Each certificate's DNS name (:func:`relay.pki.certs.entity_dns_name`) must be its own, so names that
    collide (IDs differing only in case, or a topology ID equal to a derived Redis name) are refused."""
    entities: list[tuple[str, tuple[str, ...]]] = [(kme.id, ("kme",)) for kms in topology.kms for kme in kms.kmes]
    entities += [(gateway.id, ("gateway", "sae")) for gateway in topology.gateways]
    entities += [(sae.id, ("sae",)) for sae in topology.saes]
    # Foreign domains bring their own PKI; the testbed's stand-in for one gets its 020 identity and its
    # SAEs' certificates from ours.
    entities += [(foreign.identity, ("kme",)) for foreign in topology.foreign_kms]
    entities += [(sae, ("sae",)) for foreign in topology.foreign_kms for sae in foreign.saes]
    entities += [(redis_server_entity(region.id), ("redis",)) for region in topology.regions]
    entities += [(REDIS_CLIENT_ENTITY, ("redis-client",))]
    names = [entity_dns_name(entity_id) for entity_id, _ in entities]
    shared = sorted({name for name in names if names.count(name) > 1})
    if shared:
        raise TopologyError(f"certificate names used by more than one entity: {', '.join(shared)}")
    return dict(entities)


def provision(topology: Topology, keys_root: Path, *, force: bool = False) -> ProvisionReport:
    directory = KeyDirectory(keys_root / topology.name)
    if force and directory.root.exists():
        shutil.rmtree(directory.root)
    created: list[str] = []
    kept: list[str] = []
    if directory.ca.cert.is_file() and directory.ca.key.is_file():
        ca = load_identity(directory.ca)
        kept.append("ca")
    else:
        ca = create_ca(f"qkd-relay {topology.name} CA")
        write_identity(directory.root, "ca", ca)
        created.append("ca")
    for entity_id, roles in entity_roles(topology).items():
        files = directory.entity(entity_id)
        present = files.cert.is_file() and files.key.is_file() and "ca" not in created
        if present and fits_profile(load_identity(files).certificate, ca.certificate, roles):
            kept.append(entity_id)
            continue
        dns_names = ("localhost", entity_dns_name(entity_id))
        write_identity(directory.root, entity_id, issue(ca, entity_id, roles, dns_names=dns_names))
        created.append(entity_id)
    for gateway in topology.gateways:
        if (directory.identities / f"{gateway.id}{PRIVATE_SUFFIX}").is_file():
            kept.append(f"{gateway.id} ML-DSA identity")
        else:
            generate_identity(gateway.id, directory.identities)
            created.append(f"{gateway.id} ML-DSA identity")
    created += provision_redis_users(topology, directory)
    return ProvisionReport(directory, tuple(created), tuple(kept))
