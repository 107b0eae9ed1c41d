"""The state store's secrets and files (issue 17): ``[state] password`` goes into the URL object
(escaped, never spliced into text) and never into an error message; SQLite state files are
created readable by their owner only.  Real PostgreSQL."""

from __future__ import annotations

import os
from pathlib import Path

import psycopg
import pytest

from provisioner.config import load_config
from provisioner.engine.installation import open_store, state_url
from provisioner.errors import ProvisionerError
from tests.audit.pgstore import scratch_database
from tests.audit.support import alert_config

SECRET = "p@ss:w/rd%40?#&x y"  # every character that breaks a URL spliced together as text


def _config(tmp_path: Path, url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TEST_STATE_PASSWORD", SECRET)
    cfg = alert_config(tmp_path, "")
    text = cfg.path.read_text().replace(cfg.state.url, url)  # type: ignore[union-attr]
    text = text.replace("[state]\n", '[state]\npassword = "env:TEST_STATE_PASSWORD"\n')
    cfg.path.write_text(text)  # type: ignore[union-attr]
    return cfg.path  # type: ignore[return-value]


def test_a_password_full_of_url_syntax_reaches_postgres_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with scratch_database("secret") as url:
        # the shared server trusts loopback, so the password is not checked, but the URL must parse
        # into the right user, host, port and database with the password set as given
        cfg = load_config(_config(tmp_path, url, monkeypatch))
        parsed = state_url(cfg)
        assert parsed.password == SECRET and parsed.database == url.rsplit("/", 1)[1]
        assert SECRET not in str(parsed) and SECRET not in repr(parsed)
        store = open_store(cfg)
        try:
            store.put("k", {"v": 1})
            assert store.get("k") == {"v": 1}
        finally:
            store.close()
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT value FROM provisioner_state WHERE key = 'k'").fetchone() is not None


def test_the_password_never_appears_in_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = load_config(_config(tmp_path, "postgresql://svc@127.0.0.1:1/nowhere", monkeypatch))
    with pytest.raises(ProvisionerError) as info:
        open_store(cfg)
    assert "127.0.0.1" in str(info.value)
    assert SECRET not in str(info.value) and "w/rd" not in str(info.value) and "p@ss" not in str(info.value)


def test_sqlite_state_files_are_created_0600(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        cfg = alert_config(tmp_path, "")
        store = open_store(cfg)
        try:
            store.put("k", 1)
        finally:
            store.close()
    finally:
        os.umask(old)
    assert (tmp_path / "state.db").stat().st_mode & 0o777 == 0o600
