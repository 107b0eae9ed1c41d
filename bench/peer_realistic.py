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
same PostgreSQL; phases are interleaved (provisioner, then ldap2pg) on the same
directory.  Every run is a fresh process (``provisioner apply`` as the CLI runs it, with its
SQLite state store: incremental reads, run history, audit trail / ``ldap2pg --real``):
wall seconds and peak RSS of the whole process (``/usr/bin/time``), statements
sent to PostgreSQL (provisioner: every statement incl. catalog reads, and the
writes; ldap2pg: its "Generated N queries").

Install ldap2pg 5.9 into its own virtualenv (python-ldap builds against libldap):

    apt-get install -y libldap2-dev libsasl2-dev
    python3 -m venv /tmp/l2p && /tmp/l2p/bin/pip install ldap2pg==5.9 psycopg2-binary
    LDAP2PG=/tmp/l2p/bin/ldap2pg .venv/bin/python -m bench.peer_realistic 10000 50000
    .venv/bin/python -m bench.peer_realistic --ours-only 100000

Without ``LDAP2PG`` only provisioner runs (and the script says so).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from tests.support import pg
from tests.support.e2e import source_toml
from tests.support.slapd import ADMIN_PASSWORD, READER_PASSWORD, Slapd

GENERATOR = Path(__file__).resolve().parents[3] / "shared" / "bench" / "gen_directory.py"
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


def ours_config(tmp: Path, server: Slapd, p: str, db: str) -> Path:
    login = f"{p}svc"
    with pg.admin_connect() as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN CREATEROLE").format(sql.Identifier(login)))
        conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(f"{p}app_owner"), sql.Identifier(login)))
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
    )
    return path


def ours_worker(cfg_path: str) -> None:
    """One ``provisioner apply`` in this process, as the CLI runs it (state store:
    incremental directory reads, run history, audit trail); prints its figures as JSON."""
    import logging
    import time

    import structlog

    from provisioner.config import load_config
    from provisioner.engine import execute
    from provisioner.engine.connections import Targets
    from provisioner.engine.context import RunContext
    from provisioner.engine.installation import open_store
    from provisioner.engine.record import recorded_run
    from provisioner.engine.run import apply_run

    writes: list[int] = []

    def drop(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> Mapping[str, Any]:
        raise structlog.DropEvent

    # as the CLI at log level warning (info lines are not even built), but the write count
    structlog.configure(processors=[drop], wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))

    class Counting:
        def __getattr__(self, name: str) -> Any:
            return getattr(structlog.get_logger(), name)

        def info(self, event: str, **kw: Any) -> None:
            if event == "target_applied":
                writes.append(int(kw.get("statements", 0)))

    setattr(execute, "log", Counting())  # noqa: B010
    cfg = load_config(Path(cfg_path))
    store = open_store(cfg)
    ctx = RunContext.manual(cfg, store, reason="bench")
    started = time.perf_counter()
    with recorded_run(ctx, "apply", cfg), Targets(cfg) as targets:
        plan = apply_run(cfg, ctx, targets)
        total = sum(getattr(targets.get(n), "statements_executed", 0) for n in targets.names)
    store.close()
    figures = {"seconds": time.perf_counter() - started, "changes": len(plan.changes), "statements": total}
    print(json.dumps({**figures, "writes": sum(writes)}))


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
    wall, mib, output = timed([sys.executable, "-m", "bench.peer_realistic", "--ours-worker", str(cfg)])
    figures = json.loads(output.strip().splitlines()[-1])
    return {"wall": wall, "mib": mib, "statements": figures["statements"], "writes": figures["writes"],
            "changes": figures["changes"]}


def run_peer(exe: str, cfg: Path) -> dict[str, Any]:
    wall, mib, output = timed([exe, "--config", str(cfg), "--real"], env={**os.environ, "LDAPNOINIT": "1"})
    found = re.search(r"Generated (\d+) querie", output)
    return {"wall": wall, "mib": mib, "statements": int(found.group(1)) if found else 0}


def bench_size(n: int, exe: str | None) -> dict[str, Any]:
    p, q = pg.new_prefix(), pg.new_prefix()
    ours_db, peer_db = f"{p}db", f"{q}db"
    rows: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="peer-realistic-") as tmp_name:
        tmp = Path(tmp_name)
        body, changes, stats = generate(tmp, n)
        server = load(body)
        try:
            make_database(ours_db, f"{p}app_owner")
            (tmp / "ours").mkdir()
            ours_cfg = ours_config(tmp / "ours", server, p, ours_db)
            peer_cfg = None
            if exe:
                make_database(peer_db, f"{q}app_owner")
                peer_cfg = peer_config(tmp, server, q, peer_db)
            for phase in PHASES:
                if phase == "churn":
                    churn(server, changes)
                rows[phase] = {"ours": run_ours(ours_cfg)}
                print(f"  {n} {phase} provisioner: {json.dumps(rows[phase]['ours'])}", flush=True)
                if exe and peer_cfg is not None:
                    rows[phase]["peer"] = run_peer(exe, peer_cfg)
                print(f"  {n} {phase}: {json.dumps(rows[phase])}", flush=True)
        finally:
            server.cleanup()
            drop_database(ours_db)
            drop_database(peer_db)
            pg.drop_roles_with_prefix(p)
            pg.drop_roles_with_prefix(q)
    return {"n": n, "stats": stats["before"], "rows": rows}


def report(result: dict[str, Any]) -> None:
    s = result["stats"]
    print(
        f"\n{result['n']:,} users ({s['active_users']:,} active) / {s['groups']:,} groups, "
        f"{s['active_memberships']:,} active group memberships; one run, phases interleaved"
    )
    print(f"{'phase':>6} | {'provisioner s':>13} {'MiB':>6} {'stmts':>8} {'writes':>8} | "
          f"{'ldap2pg s':>9} {'MiB':>6} {'queries':>8} | {'ldap2pg/prov':>12}")
    for phase, row in result["rows"].items():
        o, peer = row["ours"], row.get("peer")
        tail = (
            f"{peer['wall']:>9.1f} {peer['mib']:>6.0f} {peer['statements']:>8} | {peer['wall'] / o['wall']:>11.1f}x"
            if peer else f"{'-':>9} {'-':>6} {'-':>8} | {'-':>12}"
        )
        print(f"{phase:>6} | {o['wall']:>13.1f} {o['mib']:>6.0f} {o['statements']:>8} {o['writes']:>8} | {tail}")


def main(argv: list[str]) -> None:
    ours_only = "--ours-only" in argv
    sizes = [int(a) for a in argv if a.isdigit()] or [10_000]
    exe = None if ours_only else os.environ.get("LDAP2PG")
    if not exe and not ours_only:
        print("LDAP2PG is not set: provisioner only (see the module docstring to install ldap2pg 5.9)")
    for n in sizes:
        report(bench_size(n, exe))


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--ours-worker":
        ours_worker(sys.argv[2])
    else:
        main(sys.argv[1:])
