"""Fixtures: a private local Graph server per test, and source configs for it."""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from provisioner.config import EntraSourceConfig
from tests.support.graph_server import GraphServer, thumbprint


@pytest.fixture
def graph(tmp_path: Path) -> Iterator[GraphServer]:
    server = GraphServer(tmp_path / "graph").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def secret_env(graph: GraphServer, monkeypatch: pytest.MonkeyPatch) -> str:
    name = "PROV_TEST_ENTRA_SECRET_" + secrets.token_hex(4).upper()
    monkeypatch.setenv(name, graph.client_secret)
    return f"env:{name}"


@pytest.fixture
def entra_config(graph: GraphServer, secret_env: str) -> Callable[..., EntraSourceConfig]:
    """``entra_config(**overrides)`` -> a config for the local server with a unique name."""

    def make(**overrides: Any) -> EntraSourceConfig:
        data: dict[str, Any] = {
            "type": "entra",
            "name": "entra-" + secrets.token_hex(3),
            "tenant_id": graph.tenant,
            "client_id": graph.client_id,
            "client_secret": secret_env,
            "authority_host": graph.url,
            "graph_url": graph.url,
            "ca_file": str(graph.ca_file),
            "backoff_base": 0.01,
            "backoff_max": 0.05,
            **overrides,
        }
        return EntraSourceConfig.model_validate({k: v for k, v in data.items() if v is not None})

    return make


def make_certificate(directory: Path) -> tuple[Path, str, Any]:
    """An RSA key + self-signed certificate as registered on an app: (key file, SHA-1 thumbprint, public key)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "provisioner test app")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    path = directory / "app.key"
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    path.chmod(0o600)
    return path, thumbprint(cert.public_bytes(serialization.Encoding.DER)), key.public_key()
