"""Leader election on a MariaDB target, against the real server: a dedicated
session holding GET_LOCK('provisioner-leader:<target>', 0)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from provisioner.config import load_config
from provisioner.daemon.ha import Leadership
from provisioner.targets.base import lock_name
from tests.daemon.support import wait_for
from tests.mysql.support import make_mysql_setup
from tests.support import mysql as M
from tests.support.e2e import RELAXED_SAFETY


def _electors(tmp_path: Path, prefix: str, login: M.Login) -> tuple[Leadership, Leadership, str]:
    env = make_mysql_setup(tmp_path, prefix, login, extra=RELAXED_SAFETY + "\n[daemon]\nha_lock = true\n")
    cfg = load_config(env.setup.path)
    return Leadership(cfg), Leadership(cfg), f"{prefix}maria"


def _holder(admin: Any, name: str) -> int | None:
    ((thread,),) = M.q(admin, "SELECT IS_USED_LOCK(%s)", (name,))
    return None if thread is None else int(thread)


def test_first_elector_wins_and_closing_hands_over(
    tmp_path: Path, mysql_prefix: str, mysql_login: M.Login, mysql_admin: Any
) -> None:
    a, b, target = _electors(tmp_path, mysql_prefix, mysql_login)
    try:
        assert lock_name("leader", target) != lock_name("apply", target)
        assert a.leads(target) is True
        assert b.leads(target) is False
        assert a.leads(target) is True  # re-checked, still held
        assert a.status() == {target: True} and b.status() == {target: False}
        assert _holder(mysql_admin, lock_name("leader", target)) is not None
        assert _holder(mysql_admin, lock_name("apply", target)) is None  # the apply lock stays free
        a.release_all()
        assert _holder(mysql_admin, lock_name("leader", target)) is None
        assert b.leads(target) is True
        assert a.leads(target) is False  # a released elector takes part again, as a follower
    finally:
        a.release_all()
        b.release_all()


def test_killed_leader_session_frees_the_lock(
    tmp_path: Path, mysql_prefix: str, mysql_login: M.Login, mysql_admin: Any
) -> None:
    a, b, target = _electors(tmp_path, mysql_prefix, mysql_login)
    try:
        assert a.leads(target) is True
        assert b.leads(target) is False
        thread = _holder(mysql_admin, lock_name("leader", target))
        assert thread is not None
        M.q(mysql_admin, "KILL CONNECTION %s", (thread,))  # what the server does when the leader dies
        wait_for(
            "the killed session's lock to be freed", lambda: _holder(mysql_admin, lock_name("leader", target)) is None
        )
        assert b.leads(target) is True
        assert a.leads(target) is False  # its session is gone: it notices, reconnects, follows
    finally:
        a.release_all()
        b.release_all()


def test_ha_lock_false_leads_every_mysql_target(tmp_path: Path, mysql_prefix: str, mysql_login: M.Login) -> None:
    env = make_mysql_setup(tmp_path, mysql_prefix, mysql_login, extra=RELAXED_SAFETY + "\n[daemon]\nha_lock = false\n")
    cfg = load_config(env.setup.path)
    a, b = Leadership(cfg), Leadership(cfg)
    assert a.leads(f"{mysql_prefix}maria") and b.leads(f"{mysql_prefix}maria")
    assert a.status() == {}
