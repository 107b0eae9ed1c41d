"""Active Directory read figures against a throw-away Samba AD DC.

Provisions a DC (tests/support/samba.py), bulk-loads N users (default 10,000)
with department/title, 1/5 as many groups of 1-40 members and one group holding
every user, then prints, measured in one run: a full read (no state store), a
full read with a small member range step, the first incremental run, an
incremental no-op and an incremental run after 100 users changed -- with ratios.

    .venv/bin/python -m bench.ad_sync            # 10,000 users
    .venv/bin/python -m bench.ad_sync 2000
"""

from __future__ import annotations

import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import structlog

from bench.ldap_fixture import DEPARTMENTS
from provisioner.sources.ldap import LdapSource
from provisioner.store.state import StateStore
from tests.support.samba import BASE, SambaDC, group_record, user_record


def _records(n: int, rng: random.Random) -> tuple[list[Any], str]:
    ou = f"OU=bench,{BASE}"
    people, groups = f"OU=people,{ou}", f"OU=groups,{ou}"
    out: list[Any] = [(dn, {"objectClass": "organizationalUnit"}) for dn in (ou, people, groups)]
    dns = []
    for i in range(n):
        dept = rng.choice(list(DEPARTMENTS))
        name = f"u{i:06d}"
        out.append(user_record(people, name, department=dept, title=rng.choice(DEPARTMENTS[dept])))
        dns.append(f"CN={name},{people}")
    for g in range(max(1, n // 5)):
        out.append(group_record(groups, f"g{g:05d}", sorted(set(rng.sample(dns, rng.randint(1, 40))))))
    out.append(group_record(groups, "everyone", dns))
    return out, people


def _run(cfg: Any, store: StateStore | None) -> tuple[float, str, int, int]:
    started = time.perf_counter()
    source = LdapSource(cfg, store=store)
    snap = source.read()
    took = time.perf_counter() - started
    everyone = sum(1 for i in snap.identities if "everyone" in i.groups)
    mode = source.last_stats.get("mode", "no store")
    if mode == "incremental":
        mode += f" ({source.last_stats['users_changed']} users re-read)"
    return took, mode, len(snap.identities), everyone


def main(argv: list[str]) -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))
    n = int(argv[0]) if argv else 10_000
    rng = random.Random(5)
    dc = SambaDC(max_runtime=3600)
    try:
        prov = dc.provision()
        dc.start()
        records, people = _records(n, rng)
        load = dc.ldbadd(records)
        print(f"Samba AD DC at {dc.host}: provision {prov:.1f}s, ldbadd {n:,} users {load:.1f}s (not part of a run)")
        cfg = dc.source_config(user_base=people, group_base=f"OU=groups,OU=bench,{BASE}", page_size=1000)
        with tempfile.TemporaryDirectory() as tmp:
            store = StateStore(f"sqlite:///{Path(tmp) / 'state.db'}")
            rows = [("full read, no state store", *_run(cfg, None))]
            rows.append(("full read, range_step = 500", *_run(cfg.model_copy(update={"range_step": 500}), None)))
            rows.append(("incremental: first run (full)", *_run(cfg, store)))
            rows.append(("incremental: no-op", *_run(cfg, store)))
            conn = dc.admin()
            for i in rng.sample(range(n), 100):
                conn.modify(f"CN=u{i:06d},{people}", {"department": [("MODIFY_REPLACE", ["Compliance"])]})
            rows.append(("incremental: 100 users changed", *_run(cfg, store)))
            store.close()
    finally:
        dc.cleanup()
    full = rows[0][1]
    print(f"{'run':34} {'wall s':>7} {'ratio':>6}  identities / members of 'everyone'")
    for label, took, mode, idents, everyone in rows:
        print(f"{label:34} {took:7.2f}  x{took / full:4.2f}  {idents} / {everyone}   [{mode}]")


if __name__ == "__main__":
    main(sys.argv[1:])
