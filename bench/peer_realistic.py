"""provisioner and ldap2pg 5.9 side by side on a realistic directory (issue 19).

The directory is the shared generator's (``../shared/bench/gen_directory.py``,
seed 42): N people in 7 departments, ~2% terminated, G = N/20 groups (functional,
cross-department, many small Zipf-popular project groups, ~5% power users),
then 1% movers and 1% leavers applied with ``ldapmodify``.  It is bulk-loaded into a
private slapd with the ``memberof`` overlay (ldap2pg's mapping reads ``memberOf``).

The mapping is the shared ``ldap2pg-model.yml``: a NOLOGIN role per directory group,
a LOGIN role per active person in ``readers``, ``dept_<department>`` and
``grp_<cn>`` per group, read-only privileges per department schema.  provisioner
expresses it in two rules (``grp_{group}`` templated from the groups under
``ou=groups``) and a role catalog; ldap2pg with the model's sync map.  Each tool
has its own role prefix and its own database (same schemas and tables), in the
same PostgreSQL; phases are interleaved (ldap2pg, then provisioner's one-shot process, then
its warm daemon process) on the same directory.  Every one-shot run is a fresh process
(``provisioner apply`` as the CLI runs it, with its SQLite state store: incremental
reads, run history, audit trail / ``ldap2pg --real``):
wall seconds and peak RSS of the whole process (``/usr/bin/time``), statements
sent to PostgreSQL (provisioner: every statement incl. catalog reads, and the
writes; ldap2pg: its "Generated N queries").

Install ldap2pg 5.9 into its own virtualenv (python-ldap builds against libldap):

    apt-get install -y libldap2-dev libsasl2-dev
    python3 -m venv /tmp/l2p && /tmp/l2p/bin/pip install ldap2pg==5.9 psycopg2-binary
    LDAP2PG=/tmp/l2p/bin/ldap2pg .venv/bin/python -m bench.peer_realistic 10000 50000
    .venv/bin/python -m bench.peer_realistic --ours-only 100000
    .venv/bin/python -m bench.peer_realistic --ours-only --compact 50000 100000   # VACUUM FULL between sizes

Without ``LDAP2PG`` only provisioner runs (and the script says so).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from tests.support import pg
from tests.support.e2e import source_toml
from tests.support.slapd import ADMIN_PASSWORD, READER_PASSWORD, Slapd

GENERATOR = next(
    (p / "shared" / "bench" / "gen_directory.py" for p in Path(__file__).resolve().parents
     if (p / "shared" / "bench" / "gen_directory.py").exists()),
    Path(os.environ.get("PROVISIONER_BENCH_GENERATOR", "../shared/bench/gen_directory.py")),
)
"""The shared generator, in the first ``shared/bench`` beside the checkout or one of its parents
(``$PROVISIONER_BENCH_GENERATOR`` otherwise)."""
SUFFIX = "dc=bench,dc=example"
PEOPLE = f"ou=people,{SUFFIX}"
GROUPS = f"ou=groups,{SUFFIX}"
DEPARTMENTS = ("trading", "operations", "compliance", "risk", "it", "finance", "hr")
SCHEMAS = ("reporting", "trading", "operations", "compliance", "risk", "it", "hr")
SCHEMA_OF = {d: ("reporting" if d == "finance" else d) for d in DEPARTMENTS}
PHASES = ("first", "noop", "churn")


class MemberOfSlapd(Slapd):
    """The tests' slapd with the memberof overlay (memberOf kept on people)."""

    def _config_text(self) -> str:
        text = super()._config_text().replace("moduleload syncprov\n", "moduleload syncprov\nmoduleload memberof\n")
        return text + "overlay memberof\n"


# --------------------------------------------------------------------------- directory


def generate(tmp: Path, n: int) -> tuple[Path, Path, dict[str, Any]]:
    """LDIF without the suffix and OUs (the server adds its base DIT), and the churn LDIF."""
    full, changes, stats = tmp / "dir.ldif", tmp / "changes.ldif", tmp / "stats.json"
    subprocess.run(
        [sys.executable, str(GENERATOR), "--users", str(n), "--seed", "42", "-o", str(full),
         "--changes-out", str(changes), "--stats-out", str(stats)],
        check=True, capture_output=True,
    )
    entries = full.read_text().split("\n\n")
    body = tmp / "entries.ldif"
    body.write_text("\n\n".join(e for e in entries[3:] if e.strip()) + "\n")  # suffix, people, groups first
    full.unlink()
    return body, changes, json.loads(stats.read_text())


def load(body: Path) -> MemberOfSlapd:
    server = MemberOfSlapd(sizelimit="unlimited", suffix=SUFFIX)
    try:
        server.slapadd(body)
        server.start()
    except BaseException:
        server.cleanup()
        raise
    return server


@contextmanager
def loaded_directory(n: int, prefix: str) -> Iterator[tuple[Path, MemberOfSlapd, Path, dict[str, Any]]]:
    """The directory of ``n`` people generated into a temporary directory and loaded into a
    private slapd: (the temporary directory, the server, the churn LDIF, the generator's figures)."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp_name:
        tmp = Path(tmp_name)
        body, changes, stats = generate(tmp, n)
        server = load(body)
        try:
            yield tmp, server, changes, stats
        finally:
            server.cleanup()


def churn(server: Slapd, changes: Path) -> None:
    pw = server.dir / "admin.pw"
    pw.write_text(ADMIN_PASSWORD)
    pw.chmod(0o600)
    subprocess.run(
        ["ldapmodify", "-x", "-H", server.url, "-D", server.admin_dn, "-y", str(pw), "-f", str(changes)],
        check=True, capture_output=True,
    )


# --------------------------------------------------------------------------- databases


def db_dsn(db: str, user: str | None = None) -> str:
    params: dict[str, Any] = {"dbname": db}
    if user:
        params["user"] = user
    return psycopg.conninfo.make_conninfo(pg.admin_dsn(), **params)


def make_database(db: str, owner: str) -> None:
    """A database with the model's schemas and two tables each, owned by ``owner``."""
    with pg.admin_connect() as conn:
        conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(owner)))
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(db), sql.Identifier(owner)))
    with pg.admin_connect(db_dsn(db)) as conn:
        who = sql.Identifier(owner)
        for name in SCHEMAS:
            schema = sql.Identifier(name)
            conn.execute(sql.SQL("CREATE SCHEMA {} AUTHORIZATION {}").format(schema, who))
            conn.execute(sql.SQL("SET ROLE {}").format(who))
            for table in ("facts", "dims"):
                conn.execute(sql.SQL("CREATE TABLE {}.{} (id int)").format(schema, sql.Identifier(table)))
            conn.execute("RESET ROLE")


def drop_database(db: str) -> None:
    with pg.admin_connect() as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db)))


# --------------------------------------------------------------------------- provisioner


def login_role(p: str) -> str:
    """provisioner's login for role prefix ``p``: CREATEROLE, member of the database owner ``<p>app_owner``."""
    login = f"{p}svc"
    with pg.admin_connect() as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN CREATEROLE").format(sql.Identifier(login)))
        conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(f"{p}app_owner"), sql.Identifier(login)))
    return login


def ours_config(tmp: Path, server: Slapd, p: str, db: str, daemon: bool = False) -> Path:
    """``daemon``: with a ``[daemon]`` section that applies (the warm process's)."""
    login = login_role(p)
    (tmp / "mappings" / "rules").mkdir(parents=True)
    (tmp / "mappings" / "roles").mkdir()
    (tmp / "mappings" / "rules" / "bench.toml").write_text(
        f"""
[[rule]]
id = "people"
description = "every active person reads reports and their department's schema"
grant = ["{p}readers", "{p}dept_{{department}}"]
when = {{ attr = "department", present = true }}

[[rule]]
id = "ldap-groups"
description = "a NOLOGIN role per directory group"
grant = ["{p}grp_{{group}}"]
groups = {{ under = "{GROUPS}" }}
when = {{ attr = "department", present = true }}
"""
    )
    catalog = []
    for role, schema in [("readers", "reporting"), *((f"dept_{d}", SCHEMA_OF[d]) for d in DEPARTMENTS)]:
        name = p + role
        catalog.append(
            f'[role.{name}]\ndescription = "read-only {schema}"\nowner = "bench"\nsensitivity = "low"\n'
            f'[[role.{name}.grants]]\non = "database"\nprivileges = ["CONNECT"]\n'
            f'[[role.{name}.grants]]\non = "schema"\nschema = "{schema}"\nprivileges = ["USAGE"]\n'
            f'[[role.{name}.grants]]\non = "tables"\nschema = "{schema}"\nprivileges = ["SELECT"]\n'
        )
    (tmp / "mappings" / "roles" / "bench.toml").write_text("\n".join(catalog))
    source = server.source_config(
        name=f"bench-{p.rstrip('_')}", page_size=1000, timeout=120.0, user_base=PEOPLE, group_base=GROUPS
    )
    path = tmp / "config.toml"
    path.write_text(
        f"""
[provisioner]
mappings = "mappings"
log_format = "json"
log_level = "warning"

[naming]
prefix = "{p}"

[state]
url = "sqlite:///{tmp / "state.db"}"

{source_toml(source)}

[sources.attributes]
status = "employeeType"

[[targets]]
name = "pg"
type = "postgresql"
dsn = {json.dumps(db_dsn(db, login))}
manage_privileges = true
databases = [{json.dumps(db)}]

[safety]
max_revocations = 1000000
max_revocation_share = 1.0
max_identity_drop = 1.0
"""
        + ('\n[daemon]\nmode = "apply"\nha_lock = false\n' if daemon else "")
    )
    return path


# --------------------------------------------------------------------------- ldap2pg


def peer_config(tmp: Path, server: Slapd, q: str, db: str) -> Path:
    static = [f"{q}readers", *(f"{q}dept_{d}" for d in DEPARTMENTS)]
    grants: list[dict[str, Any]] = [
        {"privilege": "ro", "role": f"{q}app_owner", "database": db, "schema": "__all__"},
        {"privilege": "ro", "role": f"{q}readers", "database": db, "schema": "reporting"},
    ]
    grants += [{"privilege": "ro", "role": f"{q}dept_{d}", "database": db, "schema": SCHEMA_OF[d]} for d in DEPARTMENTS]
    marker = f"{q}ldap_roles"
    cfg = {
        "version": 5,
        "ldap": {"uri": server.url, "binddn": server.reader_dn, "password": READER_PASSWORD},
        "postgres": {
            "dsn": db_dsn(db),
            "databases_query": [db],
            "managed_roles_query": (
                f"VALUES ('public'), ('{marker}'), ('{q}app_owner') UNION "
                "SELECT DISTINCT role.rolname FROM pg_catalog.pg_roles AS role "
                "JOIN pg_catalog.pg_auth_members AS ms ON ms.member = role.oid "
                f"JOIN pg_catalog.pg_roles AS parent ON parent.rolname = '{marker}' AND parent.oid = ms.roleid "
                "ORDER BY 1;"
            ),
            "roles_blacklist_query": ["postgres", "pg_*"],
            "schemas_query": (
                "SELECT nspname FROM pg_catalog.pg_namespace "
                "WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema' ORDER BY 1;"
            ),
            "owners_query": [f"{q}app_owner"],
        },
        "privileges": {"ro": ["__connect__", "__usage_on_schemas__", "__select_on_tables__"]},
        "sync_map": [
            {
                "description": "Static roles and grants",
                "roles": [
                    {"name": marker, "options": "NOLOGIN", "comment": "ldap2pg marker role"},
                    {"name": f"{q}app_owner", "options": "NOLOGIN", "parent": marker},
                    {"names": static, "options": "NOLOGIN", "parent": marker, "comment": "static role"},
                ],
                "grant": grants,
            },
            {
                "description": "LDAP groups -> NOLOGIN group roles",
                "ldapsearch": {"base": GROUPS, "filter": "(objectClass=groupOfNames)"},
                "role": {"name": q + "grp_{cn}", "options": "NOLOGIN", "parent": marker, "comment": "ldap2pg: {dn}"},
            },
            {
                "description": "Active people -> LOGIN roles",
                "ldapsearch": {
                    "base": PEOPLE,
                    "filter": "(&(objectClass=inetOrgPerson)(!(employeeType=terminated)))",
                    "allow_missing_attributes": ["memberOf"],
                },
                "role": {
                    "name": q + "{uid}",
                    "options": "LOGIN",
                    "parents": [marker, f"{q}readers", q + "dept_{departmentNumber}", q + "grp_{memberOf.cn}"],
                    "comment": "ldap2pg: {employeeNumber}",
                },
            },
        ],
    }
    path = tmp / "ldap2pg.yml"
    path.write_text(json.dumps(cfg))  # YAML is a superset of JSON
    path.chmod(0o600)
    return path


# --------------------------------------------------------------------------- measuring


def timed(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """Wall seconds, peak RSS MiB and output of a command run under /usr/bin/time."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as out:
        res = subprocess.run(
            ["/usr/bin/time", "-f", "%e %M", "-o", out.name, *cmd],
            capture_output=True, text=True, env=env, check=False,
        )
        if res.returncode != 0:
            raise RuntimeError(f"{cmd[0]} failed ({res.returncode}): {res.stderr[-3000:]}")
        wall, kib = out.read().split()[-2:]
    return float(wall), int(kib) / 1024, res.stdout + res.stderr


def run_ours(cfg: Path) -> dict[str, Any]:
    wall, mib, output = timed([sys.executable, "-m", "bench.peer_warm", "--once", str(cfg)])
    figures = json.loads(output.strip().splitlines()[-1])
    return {"wall": wall, "mib": mib, "statements": figures["statements"], "writes": figures["writes"],
            "changes": figures["changes"]}


class Warm:
    """The daemon's warm path: one ``bench.peer_warm`` process kept across the phases."""

    def __init__(self, cfg: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.peer_warm", str(cfg)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        self.ready = self._answer()["ready"]

    def _answer(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the warm process ended ({self.proc.wait()})")
        return dict(json.loads(line))

    def run(self) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write("run\n")
        self.proc.stdin.flush()
        got = self._answer()
        return {"wall": got["seconds"], "gc": got.get("gc_seconds", 0.0), "mib": got["peak_mib"],
                "changes": got["changes"], "rss_after": got["rss_mib"], "lifetime_mib": got["lifetime_mib"],
                "skipped": got["skipped"]}

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(timeout=120)


def run_peer(exe: str, cfg: Path) -> dict[str, Any]:
    wall, mib, output = timed([exe, "--config", str(cfg), "--real"], env={**os.environ, "LDAPNOINIT": "1"})
    found = re.search(r"Generated (\d+) querie", output)
    return {"wall": wall, "mib": mib, "statements": int(found.group(1)) if found else 0}


def bench_size(n: int, exe: str | None, one_shot: bool = True) -> dict[str, Any]:
    """``one_shot``: False measures the warm process alone (a quicker loop while profiling)."""
    p, q, w = pg.new_prefix(), pg.new_prefix(), pg.new_prefix()
    ours_db, peer_db, warm_db = f"{p}db", f"{q}db", f"{w}db"
    warm: Warm | None = None
    rows: dict[str, dict[str, Any]] = {}
    with loaded_directory(n, "peer-realistic-") as (tmp, server, changes, stats):
        try:
            if one_shot:
                make_database(ours_db, f"{p}app_owner")
            (tmp / "ours").mkdir()
            ours_cfg = ours_config(tmp / "ours", server, p, ours_db) if one_shot else tmp
            make_database(warm_db, f"{w}app_owner")
            (tmp / "warm").mkdir()
            warm = Warm(ours_config(tmp / "warm", server, w, warm_db, daemon=True))
            peer_cfg = None
            if exe:
                make_database(peer_db, f"{q}app_owner")
                peer_cfg = peer_config(tmp, server, q, peer_db)
            for phase in PHASES:
                if phase == "churn":
                    churn(server, changes)
                # ldap2pg first: each tool's run then follows the other tenants' runs of the same
                # phase (a no-op after their no-ops, not after ldap2pg's first sync of 10,000 roles)
                peer = run_peer(exe, peer_cfg) if exe and peer_cfg is not None else None
                rows[phase] = {"ours": run_ours(ours_cfg) if one_shot else {}}
                print(f"  {n} {phase} provisioner: {json.dumps(rows[phase]['ours'])}", flush=True)
                rows[phase]["warm"] = warm.run()
                print(f"  {n} {phase} provisioner warm: {json.dumps(rows[phase]['warm'])}", flush=True)
                if phase == "noop":  # the daemon's next no-op: the one above follows an apply
                    rows[phase]["warm_again"] = warm.run()
                    print(f"  {n} {phase} provisioner warm again: {json.dumps(rows[phase]['warm_again'])}", flush=True)
                if peer is not None:
                    rows[phase]["peer"] = peer
                print(f"  {n} {phase}: {json.dumps(rows[phase])}", flush=True)
        finally:
            if warm is not None:
                warm.close()
            drop_database(ours_db)
            drop_database(warm_db)
            pg.drop_roles_with_prefix(w)
            drop_database(peer_db)
            pg.drop_roles_with_prefix(p)
            pg.drop_roles_with_prefix(q)
    return {"n": n, "stats": stats["before"], "rows": rows, "warm_ready": warm.ready if warm else 0.0}


def report(result: dict[str, Any]) -> None:
    s = result["stats"]
    print(
        f"\n{result['n']:,} users ({s['active_users']:,} active) / {s['groups']:,} groups, "
        f"{s['active_memberships']:,} active group memberships; one run, phases interleaved"
    )
    print(f"{'phase':>6} | {'one-shot s':>10} {'MiB':>6} {'stmts':>8} {'writes':>8} | "
          f"{'warm s':>8} {'GC s':>5} {'MiB':>6} {'skipped':>13} | {'ldap2pg s':>9} {'MiB':>6} {'queries':>8} | "
          f"{'l2p/one-shot':>12} {'l2p/warm':>9}")
    for phase, row in result["rows"].items():
        o = row["ours"] or {"wall": float("nan"), "mib": 0, "statements": 0, "writes": 0}
        wm, peer = row["warm"], row.get("peer")
        tail = (
            f"{peer['wall']:>9.1f} {peer['mib']:>6.0f} {peer['statements']:>8} | "
            f"{peer['wall'] / o['wall']:>11.1f}x {peer['wall'] / wm['wall']:>8.1f}x"
            if peer else f"{'-':>9} {'-':>6} {'-':>8} | {'-':>12} {'-':>9}"
        )
        print(f"{phase:>6} | {o['wall']:>10.1f} {o['mib']:>6.0f} {o['statements']:>8} {o['writes']:>8} | "
              f"{wm['wall']:>8.2f} {wm['gc']:>5.2f} {wm['mib']:>6.0f} {wm['skipped'] or '-':>13} | {tail}")
        again = row.get("warm_again")
        if again:
            ratio = f"{peer['wall'] / again['wall']:>8.1f}x" if peer else f"{'-':>9}"
            print(f"{'again':>6} | {'':>10} {'':>6} {'':>8} {'':>8} | {again['wall']:>8.2f} {again['gc']:>5.2f} "
                  f"{again['mib']:>6.0f} "
                  f"{again['skipped'] or '-':>13} | {'':>9} {'':>6} {'':>8} | {'':>12} {ratio}")
    print("one-shot: a fresh `provisioner apply` process per phase (wall and peak RSS of the whole process);"
          " warm: one daemon process (Runner + WarmState) across the phases, wall of Runner.run (GC s: the"
          " full collection the daemon makes after each run, included) and the"
          f" run's own peak RSS; its start took {result['warm_ready']:.1f} s; 'again': the warm process's next"
          " no-op (the first follows an apply, which moved the catalog digest); skipped: what the daemon's"
          " shortcuts skipped (the digest covers the whole shared cluster: other suites' roles defeat it)")


def main(argv: list[str]) -> None:
    ours_only = "--ours-only" in argv
    sizes = [int(a) for a in argv if a.isdigit()] or [10_000]
    exe = None if ours_only else os.environ.get("LDAP2PG")
    if not exe and not ours_only:
        print("LDAP2PG is not set: provisioner only (see the module docstring to install ldap2pg 5.9)")
    for n in sizes:
        if "--compact" in argv:
            compact_catalogs()
        report(bench_size(n, exe, one_shot="--warm-only" not in argv))


def compact_catalogs() -> None:
    """``--compact``: VACUUM FULL ANALYZE the shared role catalogs before each size.  For a
    server running without autovacuum (this machine's): every size creates and drops 100,000s
    of roles, and the next size's catalog reads would scan the dead rows too."""
    with pg.admin_connect() as conn:  # autocommit: VACUUM runs outside a transaction
        for table in ("pg_authid", "pg_auth_members", "pg_shdescription"):
            conn.execute(sql.SQL("VACUUM FULL ANALYZE pg_catalog.{}").format(sql.Identifier(table)))


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--ours-worker":  # the earlier name of the one-shot worker
        from bench.peer_warm import once

        once(sys.argv[2])
    else:
        main(sys.argv[1:])
