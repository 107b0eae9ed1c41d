"""Synthetic directory for benchmarks, and a bulk loader into a private slapd.

``generate_directory(n_users, n_groups, seed)`` yields ``(dn, attributes)``
records (people first, then groups) under the test suffix; feed them to
``load_directory`` or ``tests.support.slapd.format_ldif``.

Run ``python -m bench.ldap_fixture [N_USERS] [N_GROUPS]`` to load a server and
print how fast LdapSource reads it.
"""

from __future__ import annotations

import random
import sys
import time
import uuid
from collections.abc import Iterator

from provisioner.sources.ldap import LdapSource
from tests.support.slapd import SUFFIX, Record, Slapd

PEOPLE = f"ou=people,{SUFFIX}"
GROUPS = f"ou=groups,{SUFFIX}"

DEPARTMENTS = {
    "Trading": ["Equity Trader", "Fixed Income Trader", "Head of Trading", "Trade Approver"],
    "Operations": ["Operations Analyst", "Trade Support Analyst", "Settlements Analyst"],
    "Compliance": ["Compliance Officer", "Compliance Analyst"],
    "Risk": ["Risk Analyst", "Market Risk Manager"],
    "IT": ["DBA", "Platform Engineer", "Developer", "IT Support Analyst"],
    "Finance": ["Accountant", "Financial Controller"],
}
EMPLOYEE_TYPES = ["employee"] * 8 + ["contractor", "intern"]
LEAVER_SHARE = 0.03
FUTURE_HIRE_SHARE = 0.01


def _uid(i: int) -> str:
    return f"user{i:06d}"


def _person(i: int, rng: random.Random) -> Record:
    dept = rng.choice(list(DEPARTMENTS))
    uid = _uid(i)
    attrs: dict[str, str | list[str]] = {
        "objectClass": ["inetOrgPerson", "hrPerson"],
        "uid": uid,
        "cn": f"Person {i}",
        "sn": f"Person{i}",
        "mail": f"{uid}@bench.example",
        "departmentNumber": dept,
        "title": rng.choice(DEPARTMENTS[dept]),
        "employeeType": rng.choice(EMPLOYEE_TYPES),
        "employeeNumber": f"E{i:06d}",
        "hrStatus": "active",
        "hrHireDate": f"{rng.randint(2005, 2024)}-{rng.randint(1, 12):02d}-01",
        "entryUUID": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
    }
    roll = rng.random()
    if roll < LEAVER_SHARE:
        attrs["hrStatus"] = "terminated"
        attrs["hrLeaveDate"] = f"2025-{rng.randint(1, 12):02d}-15"
    elif roll < LEAVER_SHARE + FUTURE_HIRE_SHARE:
        attrs["hrHireDate"] = "2031-01-05"
    if i > 0:
        attrs["manager"] = f"uid={_uid(rng.randrange(0, i))},{PEOPLE}"
    return f"uid={uid},{PEOPLE}", attrs


def _group(g: int, n_users: int, n_groups: int, rng: random.Random) -> Record:
    """Groups hold 1-40 users; about a tenth also nest 1-3 lower-numbered groups."""
    members = {f"uid={_uid(rng.randrange(n_users))},{PEOPLE}" for _ in range(rng.randint(1, 40))}
    if g > 0 and rng.random() < 0.1:
        members |= {f"cn=grp{rng.randrange(g):05d},{GROUPS}" for _ in range(rng.randint(1, 3))}
    attrs: dict[str, str | list[str]] = {
        "objectClass": "groupOfNames",
        "cn": f"grp{g:05d}",
        "member": sorted(members),
    }
    return f"cn=grp{g:05d},{GROUPS}", attrs


def generate_directory(n_users: int, n_groups: int, seed: int = 1) -> Iterator[Record]:
    """Deterministic synthetic firm: people (some leavers, some future hires),
    then groups with nested membership."""
    rng = random.Random(seed)
    for i in range(n_users):
        yield _person(i, rng)
    for g in range(n_groups):
        yield _group(g, n_users, n_groups, rng)


def load_directory(
    n_users: int, n_groups: int, seed: int = 1, *, sizelimit: int | str = "unlimited"
) -> tuple[Slapd, float]:
    """Start a private slapd loaded via slapadd; returns (server, load seconds).
    The caller must ``server.cleanup()``."""
    server = Slapd(sizelimit=sizelimit)
    try:
        took = server.slapadd(generate_directory(n_users, n_groups, seed))
        server.start()
    except BaseException:
        server.cleanup()
        raise
    return server, took


def main(argv: list[str]) -> None:
    n_users = int(argv[1]) if len(argv) > 1 else 10_000
    n_groups = int(argv[2]) if len(argv) > 2 else max(1, n_users // 5)
    server, took = load_directory(n_users, n_groups)
    try:
        print(f"slapadd: {n_users} users + {n_groups} groups in {took:.2f}s")
        source = LdapSource(server.source_config(page_size=1000))
        started = time.perf_counter()
        snap = source.read()
        elapsed = time.perf_counter() - started
        print(
            f"LdapSource.read: {len(snap.identities)} identities, {snap.group_count} groups "
            f"in {elapsed:.2f}s = {len(snap.identities) / elapsed:,.0f} entries/s"
        )
    finally:
        server.cleanup()


if __name__ == "__main__":
    main(sys.argv)
