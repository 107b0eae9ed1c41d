"""deploy/: the systemd unit and the Containerfile agree (install path, config path,
state directory, credentials), the unit passes ``systemd-analyze verify`` and scores
low in ``systemd-analyze security``; the default state store and ``credential:``
secrets follow systemd's StateDirectory= and LoadCredential=.

systemd-analyze comes with Debian's ``systemd`` package (scripts/install-deps);
without it these tests fail, they do not skip."""

from __future__ import annotations

import configparser
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from provisioner.config import load_config
from provisioner.engine.installation import open_store
from provisioner.errors import ConfigError, SecretError
from provisioner.secrets import SecretRef
from tests.daemon.test_units import cfg_with

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
UNIT = DEPLOY / "provisioner.service"
CONTAINERFILE = DEPLOY / "Containerfile"


def unit_lines(key: str) -> list[str]:
    return [line.split("=", 1)[1] for line in UNIT.read_text().splitlines() if line.startswith(f"{key}=")]


def container_prefix() -> str:
    m = re.search(r"python -m venv (\S+)", CONTAINERFILE.read_text())
    assert m, "the Containerfile installs into a venv"
    return m.group(1)


def analyze() -> str:
    exe = shutil.which("systemd-analyze")
    if exe is None:
        pytest.fail("systemd-analyze is missing: run scripts/install-deps (Debian package 'systemd')")
    return exe


def test_unit_and_container_agree() -> None:
    prefix = container_prefix()
    text = CONTAINERFILE.read_text()
    (exec_start,) = unit_lines("ExecStart")
    entry = re.search(r"^ENTRYPOINT (\[.*\])$", text, re.M)
    assert entry is not None

    assert exec_start.split() == json.loads(entry.group(1)), "same binary, same arguments"
    assert exec_start.startswith(f"{prefix}/bin/provisioner ")
    assert unit_lines("StateDirectory") == ["provisioner"] and "STATE_DIRECTORY=/var/lib/provisioner" in text
    assert unit_lines("WorkingDirectory") == ["/var/lib/provisioner"] and "WORKDIR /var/lib/provisioner" in text
    assert "CREDENTIALS_DIRECTORY=/run/secrets" in text
    names = {c.split(":", 1)[0] for c in unit_lines("LoadCredential")}
    assert {"pg.pass", "trigger.token"} <= names
    assert unit_lines("EnvironmentFile") == [], "secrets come as credentials, not environment"
    assert unit_lines("IPAddressDeny") == ["any"] and "localhost" in unit_lines("IPAddressAllow")


def installed_unit(tmp_path: Path) -> Path:
    """The unit with the container's install prefix replaced by this test venv (where
    provisioner is installed), so that verify can check the executable."""
    prefix = container_prefix()
    venv = Path(sys.executable).parent.parent
    assert (venv / "bin" / "provisioner").exists()
    out = tmp_path / "provisioner.service"
    out.write_text(UNIT.read_text().replace(f"{prefix}/bin/", f"{venv}/bin/"))
    return out


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    res = subprocess.run([analyze(), "verify", str(installed_unit(tmp_path))], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "provisioner.service" not in res.stderr, res.stderr


def test_systemd_analyze_security(tmp_path: Path) -> None:
    res = subprocess.run(
        [analyze(), "security", "--offline=true", "--threshold=20", str(installed_unit(tmp_path))],
        capture_output=True,
        text=True,
    )
    m = re.search(r"Overall exposure level for provisioner\.service: (\d+\.\d+)", res.stdout)
    assert m, res.stdout + res.stderr
    assert float(m.group(1)) <= 2.0 and res.returncode == 0, res.stdout


def test_unit_parses_with_the_expected_sections() -> None:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(
        re.sub(r"^(LoadCredential|IPAddressAllow|SystemCallFilter)=.*$", "", UNIT.read_text(), flags=re.M)
    )
    assert set(parser.sections()) == {"Unit", "Service", "Install"}
    service = parser["Service"]
    assert service["User"] == "provisioner" and service["ProtectSystem"] == "strict"
    assert service["NoNewPrivileges"] == "yes" and service["CapabilityBoundingSet"] == ""


def test_default_state_store_lands_in_the_state_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    etc = tmp_path / "etc"
    etc.mkdir()
    state = tmp_path / "var-lib-provisioner"
    state.mkdir()
    cfg = load_config(cfg_with(etc, ""))
    assert cfg.state.url == "sqlite:///provisioner-state.db"
    monkeypatch.setenv("STATE_DIRECTORY", str(state))
    open_store(cfg).close()
    assert (state / "provisioner-state.db").exists() and not (etc / "provisioner-state.db").exists()
    monkeypatch.delenv("STATE_DIRECTORY")
    open_store(cfg).close()  # outside systemd: beside the configuration, as before
    assert (etc / "provisioner-state.db").exists()


def test_credential_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    creds = tmp_path / "credentials"
    creds.mkdir()
    (creds / "pg.pass").write_text("s3cret-from-credential\n")
    (creds / "pg.pass").chmod(0o400)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    assert SecretRef("credential:pg.pass").resolve() == "s3cret-from-credential"
    with pytest.raises(SecretError, match="cannot read"):
        SecretRef("credential:missing").resolve()
    (creds / "open").write_text("x")
    (creds / "open").chmod(0o644)
    with pytest.raises(SecretError, match="world-readable"):
        SecretRef("credential:open").resolve()
    monkeypatch.delenv("CREDENTIALS_DIRECTORY")
    with pytest.raises(SecretError, match="CREDENTIALS_DIRECTORY is not set"):
        SecretRef("credential:pg.pass").resolve()
    path = cfg_with(tmp_path, '[daemon]\ntrigger_token = "credential:../etc/shadow"\n')
    with pytest.raises(ConfigError, match="plain file name"):
        load_config(path)
