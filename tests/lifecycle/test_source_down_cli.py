"""Two directories feed one target and one of them is down: the one-shot ``apply`` still
disables the other directory's leaver and provisions its joiner, changes nobody of the
directory that is down (none of them counts as vanished), and fails naming it; once it is
back, the next apply has nothing left to do for its people."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.cli.test_cli import run
from tests.support.e2e import make_setup, memberships, person, role_options, source_toml
from tests.support.fixtures import LdapOu
from tests.support.slapd import Slapd


def test_one_directory_down_holds_back_no_leaver_of_the_other(
    tmp_path: Path, ldap_ou: LdapOu, slapd_factory: Callable[..., Slapd], role_prefix: str
) -> None:
    p = role_prefix
    other = slapd_factory()
    other.slapadd([])
    other.start()
    subsidiary = LdapOu(other)
    subsidiary.add_user("bea", **person("Operations", "Settlements Analyst"))
    alice = ldap_ou.add_user("alice", **person("Trading", "Equity Trader"))
    ldap_ou.add_user("amos", **person("Trading", "Equity Trader"))
    setup = make_setup(tmp_path, ldap_ou.config(name=f"{p}a"), p)
    text = setup.path.read_text().replace("[[targets]]", source_toml(subsidiary.config(name=f"{p}b")) + "\n\n[[targets]]")
    setup.path.write_text(text)
    cfg = str(setup.path)
    first = run("apply", "-c", cfg, "--reason", "CHG-1 first sync")
    assert first.returncode == 0, first.stderr
    before = memberships(p)
    assert before[f"{p}bea"] and before[f"{p}alice"] and before[f"{p}amos"], before

    other.stop()  # the subsidiary's directory goes down; alice leaves, ava joins
    ldap_ou.modify(alice, hrStatus="terminated")
    ldap_ou.add_user("ava", **person("Trading", "Equity Trader"))
    planned = run("plan", "-c", cfg, "--detailed-exitcode")
    assert planned.returncode == 3, planned.stdout + planned.stderr  # an error notice: the source down
    assert f"'{p}b' could not be read" in planned.stdout + planned.stderr, planned.stdout + planned.stderr
    done = run("apply", "-c", cfg, "--reason", "CHG-2 leaver")
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"'{p}b' could not be read" in done.stderr, done.stderr
    after = memberships(p)
    assert role_options(f"{p}alice")[0] is False and f"{p}alice" not in after, "the leaver of A was held back"  # type: ignore[index]
    assert after[f"{p}ava"] == before[f"{p}amos"], "the joiner of A was held back"
    assert role_options(f"{p}bea")[0] is True and after[f"{p}bea"] == before[f"{p}bea"], "B's person was changed"
    assert after[f"{p}amos"] == before[f"{p}amos"]

    other.start()  # back: B's people were never counted missing, nothing is left to do
    again = run("plan", "-c", cfg, "--detailed-exitcode")
    assert again.returncode == 0, again.stdout + again.stderr
