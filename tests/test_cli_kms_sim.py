"""The console script as an operator runs it: `keys init`, `kms-sim run` as a real process, `sae`, `set-qber`.

The simulator is also exercised by an independent ETSI 014 client (``etsi-qkd-014-client`` from PyPI,
built on ``requests``), which knows nothing of our code: it proves the field names and both request forms.
"""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from cryptography import x509
from etsi_qkd_014_client import QKD014Client

from relay.crypto import load_trust_store
from tests.support.cli import QKD_RELAY, one_line_error, run_cli
from tests.support.ports import free_port


def write_text(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def topology_yaml(kme_a: int, kme_b: int, admin: int) -> str:
    return f"""
name: clitest
kms:
  - id: KMS-X
    region: r1
    admin_port: {admin}
    kmes: [{{id: KME-X-A, port: {kme_a}}}, {{id: KME-X-B, port: {kme_b}}}]
regions:
  - id: r1
    redis_port: 1011
    gateways: [{{id: GW-A, etsi014_port: 1012, etsi020_port: 1013, grpc_port: 1014}}]
    saes: [{{id: SAE-A, gateway: GW-A}}]
  - id: r2
    redis_port: 1021
    gateways: [{{id: GW-B, etsi014_port: 1022, etsi020_port: 1023, grpc_port: 1024}}]
qkd_links:
  - {{id: QL-AB, kms: KMS-X, rate_bps: 100000, endpoints: [{{sae: GW-A, kme: KME-X-A}}, {{sae: GW-B, kme: KME-X-B}}]}}
links:
  - {{gateways: [GW-A, GW-B], qkd_link: QL-AB}}
"""


@dataclass
class SimProcess:
    workdir: Path
    topology: Path
    keys: Path
    kme_a: str
    kme_b: str

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_cli(*args, "--topology", self.topology, cwd=self.workdir)

    def sae_cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_cli("sae", *args, "--topology", self.topology, "--keys", self.keys, cwd=self.workdir)

    def independent_client(self, sae: str, url: str) -> QKD014Client:
        entity = self.keys / "clitest"
        return QKD014Client(
            url.removeprefix("https://"), str(entity / f"{sae}.crt"), str(entity / f"{sae}.key"), str(entity / "ca.crt")
        )


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimProcess]:
    workdir = tmp_path_factory.mktemp("cli")
    ports = free_port(), free_port(), free_port()
    topology = write_text(workdir / "topology.yaml", topology_yaml(*ports))
    assert run_cli("keys", "init", "--topology", topology, cwd=workdir).returncode == 0
    process = subprocess.Popen(
        [*QKD_RELAY, "kms-sim", "run", "--kms", "KMS-X", "--topology", str(topology), "--availability-timeout", "30"],
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    started = [process.stdout.readline() for _ in range(3)]
    assert all("KMS-X" in line for line in started), started
    try:
        yield SimProcess(
            workdir, topology, workdir / "keys", f"https://127.0.0.1:{ports[0]}", f"https://127.0.0.1:{ports[1]}"
        )
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0


def test_keys_init_writes_split_and_combined_pems_signed_by_the_ca(tmp_path: Path) -> None:
    topology = write_text(tmp_path / "t.yaml", topology_yaml(1, 2, 3))
    first = run_cli("keys", "init", "--topology", topology, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    root = tmp_path / "keys" / "clitest"
    ca = x509.load_pem_x509_certificate((root / "ca.crt").read_bytes())
    for entity in ("KME-X-A", "KME-X-B", "GW-A", "GW-B", "SAE-A"):
        cert = x509.load_pem_x509_certificate((root / f"{entity}.crt").read_bytes())
        cert.verify_directly_issued_by(ca)
        assert (root / f"{entity}.key").stat().st_mode & 0o777 == 0o600
        combined = (root / f"{entity}.pem").read_text()
        assert "BEGIN CERTIFICATE" in combined and "BEGIN PRIVATE KEY" in combined
    for gateway_id in ("GW-A", "GW-B"):
        assert (root / "identities" / f"{gateway_id}.mldsa.pub").is_file()
        assert (root / "identities" / f"{gateway_id}.mldsa.key").stat().st_mode & 0o777 == 0o600
    assert load_trust_store(root / "identities").get("GW-B").gateway_id == "GW-B"
    gateway = x509.load_pem_x509_certificate((root / "GW-A.crt").read_bytes())
    uris = gateway.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.UniformResourceIdentifier
    )
    assert uris == ["urn:qkd-relay:gateway:GW-A", "urn:qkd-relay:sae:GW-A"]
    before = (root / "GW-A.crt").read_bytes()
    second = run_cli("keys", "init", "--topology", topology, cwd=tmp_path)
    assert "created 0" in second.stdout and (root / "GW-A.crt").read_bytes() == before
    forced = run_cli("keys", "init", "--topology", topology, "--force", cwd=tmp_path)
    assert forced.returncode == 0 and (root / "GW-A.crt").read_bytes() != before


def test_bad_input_gives_one_line_error_and_no_traceback(tmp_path: Path) -> None:
    broken = write_text(tmp_path / "broken.yaml", "name: x\nkms: []\n")
    result = run_cli("keys", "init", "--topology", broken, cwd=tmp_path)
    assert one_line_error(result).startswith("qkd-relay: error: 'kms' must be a non-empty list")
    missing = run_cli("sae", "status", "--sae", "SAE-A", "--url", "https://127.0.0.1:1", "GW-B", cwd=tmp_path)
    assert "run `qkd-relay keys init` first" in one_line_error(missing)


def test_independent_014_client_get_and_post_forms(sim: SimProcess) -> None:
    master = sim.independent_client("GW-A", sim.kme_a)
    slave = sim.independent_client("GW-B", sim.kme_b)
    code, status = master.get_status("GW-B")
    assert code == 200 and status.source_kme_id == "KME-X-A" and status.slave_sae_id == "GW-B"
    code, single = master.get_key("GW-B")  # no parameters: the GET form
    assert code == 200 and len(single.keys) == 1
    code, several = master.get_key("GW-B", number=2, size=512)  # the POST form
    assert code == 200 and len(several.keys) == 2
    issued = {k.key_id: k.key for k in [*single.keys, *several.keys]}
    code, fetched = slave.get_key_with_key_IDs("GW-A", list(issued))  # POST Key IDs
    assert code == 200 and {k.key_id: k.key for k in fetched.keys} == issued
    code, error = slave.get_key_with_key_IDs("GW-A", list(issued)[:1])
    assert code == 400 and error.message == "one or more keys specified are not found on KME"


def test_plain_https_get_forms_of_both_methods(sim: SimProcess) -> None:
    root = sim.keys / "clitest"
    tls = {"verify": str(root / "ca.crt")}
    master_cert = (str(root / "GW-A.crt"), str(root / "GW-A.key"))
    response = requests.get(
        f"{sim.kme_a}/api/v1/keys/GW-B/enc_keys?number=1&size=128", cert=master_cert, timeout=10, **tls
    )
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("application/json")
    key = response.json()["keys"][0]
    response = requests.get(
        f"{sim.kme_b}/api/v1/keys/GW-A/dec_keys?key_ID={key['key_ID']}",
        cert=(str(root / "GW-B.crt"), str(root / "GW-B.key")),
        timeout=10,
        **tls,
    )
    assert response.json()["keys"] == [key]
    wrong_sae = requests.get(
        f"{sim.kme_a}/api/v1/keys/GW-B/status",
        cert=(str(root / "SAE-A.crt"), str(root / "SAE-A.key")),
        timeout=10,
        **tls,
    )
    assert wrong_sae.status_code == 401


def test_sae_commands_share_a_key(sim: SimProcess) -> None:
    got = sim.sae_cli("get-key", "--sae", "GW-A", "--url", sim.kme_a, "--number", "1", "GW-B")
    assert got.returncode == 0, got.stderr
    key = json.loads(got.stdout)["keys"][0]
    fetched = sim.sae_cli("get-key-with-ids", "--post", "--sae", "GW-B", "--url", sim.kme_b, "GW-A", key["key_ID"])
    assert json.loads(fetched.stdout)["keys"] == [key]
    again = sim.sae_cli("get-key-with-ids", "--sae", "GW-B", "--url", sim.kme_b, "GW-A", key["key_ID"])
    assert again.returncode == 1 and json.loads(again.stdout)["http_status"] == 400


def test_set_qber_cli_halts_and_restores_the_link(sim: SimProcess) -> None:
    halted = sim.cli("kms-sim", "set-qber", "--kms", "KMS-X", "QL-AB", "0.2")
    assert halted.returncode == 0 and "HALTED" in halted.stdout
    refused = sim.sae_cli("get-key", "--sae", "GW-A", "--url", sim.kme_a, "GW-B")
    body = json.loads(refused.stdout)
    assert body["http_status"] == 503 and "QBER 0.200" in body["message"]
    restored = sim.cli("kms-sim", "set-qber", "--kms", "KMS-X", "QL-AB", "0.01")
    assert "delivering" in restored.stdout
    links = json.loads(sim.cli("kms-sim", "links", "--kms", "KMS-X").stdout)["links"]
    assert links[0]["id"] == "QL-AB" and links[0]["halted"] is False
    unknown = sim.cli("kms-sim", "set-qber", "--kms", "KMS-X", "QL-NOPE", "0.2")
    assert "unknown QKD link" in one_line_error(unknown)


def test_sae_against_a_dead_kme_is_a_clear_error(sim: SimProcess) -> None:
    result = sim.sae_cli("status", "--sae", "GW-A", "--url", f"https://127.0.0.1:{free_port()}", "GW-B")
    assert one_line_error(result).startswith("qkd-relay: error:")
