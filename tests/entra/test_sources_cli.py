"""``provisioner sources check`` against the local Graph server and a real slapd."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from provisioner.cli import cli
from tests.support import config as test_config
from tests.support.e2e import RULES, source_toml
from tests.support.fixtures import LdapOu
from tests.support.graph_server import GraphServer


def write_config(tmp_path: Path, *sources: str) -> Path:
    (tmp_path / "mappings" / "rules").mkdir(parents=True)
    (tmp_path / "mappings" / "rules" / "r.toml").write_text(RULES.format(p="x_"))
    path = test_config.write_config(
        tmp_path / "config.toml",
        sources=sources,
        targets=[{"name": "pg", "type": "postgresql", "dsn": "host=127.0.0.1 dbname=test"}],
        log_level="error",
    )
    return path


def test_check_entra_and_ldap(tmp_path: Path, graph: GraphServer, ldap_ou: LdapOu, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROV_TEST_CLI_SECRET", graph.client_secret)
    carol = graph.add_user("carol@contoso.com", department="Trading", jobTitle="Head of Trading")
    graph.add_user("bob@contoso.com", department="Operations", accountEnabled=False)
    graph.add_group("approvers", [carol])
    ldap_ou.add_user("lena", departmentNumber="Risk", title="Analyst", hrStatus="active")
    entra = graph.source_toml("cli-entra", client_secret="env:PROV_TEST_CLI_SECRET", delta=False)
    path = write_config(tmp_path, entra, source_toml(ldap_ou.config(name="cli-ldap")))
    result = CliRunner().invoke(cli, ["sources", "check", "-c", str(path), "--sample", "5"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "source cli-entra (entra):" in out and "source cli-ldap (ldap):" in out
    assert "identities: 2   groups: 1" in out
    carol_block = out[out.index("- carol") :].split("- ", 2)[1]
    assert "groups: " in carol_block and "approvers" in carol_block
    assert "lifecycle: leaver (lifecycle:leaver: account disabled in the directory)" in out
    assert "lena  (id " in out and "department=Risk" in out
    assert "2 of 2 source(s) ok" in out

    only = CliRunner().invoke(cli, ["sources", "check", "-c", str(path), "--source", "cli-ldap", "--sample", "0"])
    assert only.exit_code == 0 and "cli-entra" not in only.output and "1 of 1 source(s) ok" in only.output


def test_check_fails_with_clear_error(tmp_path: Path, graph: GraphServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROV_TEST_CLI_BAD", "not-the-secret")
    graph.add_user("carol@contoso.com")
    path = write_config(tmp_path, graph.source_toml("cli-bad", client_secret="env:PROV_TEST_CLI_BAD", delta=False))
    result = CliRunner().invoke(cli, ["sources", "check", "-c", str(path)])
    assert result.exit_code == 1
    assert "FAILED (SourceUnavailable)" in result.output and "invalid_client" in result.output
    assert "not-the-secret" not in result.output
    assert "0 of 1 source(s) ok" in result.output
