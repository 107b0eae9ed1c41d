"""``provisioner validate`` in one pass (issue 15): configuration and mapping errors
together, file:line everywhere (the role catalog too), attributes no source maps,
role names that exist nowhere (offline near misses; ``--online`` against PostgreSQL)."""

from __future__ import annotations

import json
from pathlib import Path

from psycopg import sql

from tests.cli.test_cli import run
from tests.support import pg
from tests.support.e2e import make_setup, memberships, person
from tests.support.fixtures import LdapOu

RULES = """
[[rule]]
id = "ops"
description = "operations settle"
grant = ["{p}ops_settlement"]
when = {{ attr = "departmnet", equals = "Operations" }}

[[rule]]
id = "approvers"
description = "approvers"
grant = ["{p}trade_approver"]
when = {{ attr = "title", equals = "Approver" }}
"""

CATALOG = """
[role.{p}ops_settlement]
description = "settlement"
owner = "ops"

[role.{p}trade_approver]
description = "approve"
owner = "desk"
sensitivity = "extreme"
"""


def _mappings(root: Path, p: str, catalog: str = CATALOG) -> None:
    (root / "rules").mkdir(parents=True)
    (root / "roles").mkdir()
    (root / "rules" / "r.toml").write_text(RULES.format(p=p))
    (root / "roles" / "c.toml").write_text(catalog.format(p=p))


def test_config_and_mapping_errors_are_reported_together(tmp_path: Path) -> None:
    _mappings(tmp_path / "m", "x_")
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        '[provisioner]\nmappings = "m"\n[naming]\ncharset = "klingon"\n'
        '[[sources]]\nname = "s"\ntype = "ldif"\npath = "d.ldif"\n'
        '[[targets]]\nname = "t"\ntype = "postgresql"\ndsn = "host=x"\n'
    )
    res = run("validate", "-c", str(cfg))
    assert res.returncode == 1
    assert f"{cfg}: naming.charset" in res.stderr, res.stderr
    catalog = tmp_path / "m" / "roles" / "c.toml"
    assert f"{catalog}:6: [role.x_trade_approver]: sensitivity 'extreme'" in res.stderr, res.stderr


def test_unmapped_attributes_and_unknown_names(tmp_path: Path, role_prefix: str) -> None:
    p = role_prefix
    _mappings(tmp_path / "m", p, CATALOG.replace('sensitivity = "extreme"', 'sensitivity = "high"'))
    with pg.admin_connect() as conn:
        conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(f"{p}dba")))
    dsn = pg.admin_dsn()
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f'[provisioner]\nmappings = "m"\n[lifecycle]\nbreak_glass = ["{p}breakglass"]\n'
        '[[sources]]\nname = "s"\ntype = "ldif"\npath = "d.ldif"\n'
        '[sources.attributes]\ncostcentre = "ou"\nleave_date = { attribute = "description", '
        'pattern = "leave-date:(\\\\d{4}-\\\\d{2}-\\\\d{2})", format = "%Y-%m-%d" }\n'
        f'[[targets]]\nname = "t"\ntype = "postgresql"\ndsn = {json.dumps(dsn)}\n'
        "allow_superuser = true\n"  # the tests' admin DSN is a superuser (refused by default)
        f'protected_roles = ["{p}trade_aprover", "{p}dba"]\n'
    )
    res = run("validate", "-c", str(cfg))
    assert res.returncode == 1, res.stdout + res.stderr
    rules = tmp_path / "m" / "rules" / "r.toml"
    assert f"{rules}:2: rule 'ops' reads attribute 'departmnet', which no source maps (did you mean 'department'?)" in (
        res.stderr
    ), res.stderr
    assert f"protected_roles: role '{p}trade_aprover' exists nowhere" in res.stderr
    assert f"did you mean '{p}trade_approver'?" in res.stderr
    assert "sources[0].attributes.costcentre: 'costcentre' is no canonical attribute" in res.stderr
    assert f"'{p}dba'" not in res.stderr and f"'{p}breakglass'" not in res.stderr, "offline: near misses only"

    (rules).write_text(RULES.format(p=p).replace("departmnet", "department"))
    res = run("validate", "-c", str(cfg), "--online")
    assert res.returncode == 0, res.stderr
    assert f"lifecycle.break_glass: role '{p}breakglass' exists nowhere in the role catalog, in any rule or on any target" in (
        res.stderr
    )
    assert f"'{p}dba'" not in res.stderr, "it exists on the target"
    assert "2 warning(s)" not in res.stdout and "warning(s)" in res.stdout


def test_catalog_owner_of_the_wrong_type_says_so_with_file_and_line(tmp_path: Path) -> None:
    """``owner = 3`` is there, but not text: the message says the type is wrong (not that the
    key is missing), naming file and line like every other validation error."""
    catalog = CATALOG.replace('owner = "ops"', "owner = 3").replace('sensitivity = "extreme"', 'sensitivity = "high"')
    catalog += '\n[role.{p}risk_viewer]\ndescription = "risk"\nowner = "  "\n\n[role.{p}audit_reader]\ndescription = "audit"\n'
    _mappings(tmp_path / "m", "x_", catalog)
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        '[provisioner]\nmappings = "m"\n'
        '[[sources]]\nname = "s"\ntype = "ldif"\npath = "d.ldif"\n'
        '[[targets]]\nname = "t"\ntype = "postgresql"\ndsn = "host=x"\n'
    )
    res = run("validate", "-c", str(cfg))
    assert res.returncode == 1, res.stdout + res.stderr
    path = tmp_path / "m" / "roles" / "c.toml"
    assert f"{path}:2: [role.x_ops_settlement]: 'owner' must be a string, not an integer 3" in res.stderr, res.stderr
    assert "[role.x_ops_settlement]: 'owner' is required" not in res.stderr, res.stderr
    assert f"{path}:11: [role.x_risk_viewer]: 'owner' must not be empty" in res.stderr, res.stderr
    assert f"{path}:15: [role.x_audit_reader]: 'owner' is required" in res.stderr, res.stderr


def test_keys_of_the_wrong_type_say_so_in_rules_policies_and_exceptions(tmp_path: Path) -> None:
    """As for the catalog: a key that is there with the wrong type (``id = 7``, ``description
    = 5``, ``identity = 5``, ``expires = "tomorrow"``) is named with its type, not called missing."""
    root = tmp_path / "m"
    for sub in ("rules", "sod", "exceptions"):
        (root / sub).mkdir(parents=True)
    (root / "rules" / "r.toml").write_text(
        '[[rule]]\nid = "a"\ndescription = 5\ngrant = "x_reader"\nwhen = { attr = "department", equals = "T" }\n\n'
        '[[rule]]\nid = 7\ndescription = "b"\ngrant = ["x_reader"]\nwhen = { attr = "department", equals = "T" }\n'
    )
    (root / "sod" / "s.toml").write_text(
        '[[policy]]\nid = "p1"\ndescription = ["x"]\nconflicts = [ { role = "x_reader" }, { role = "x_reader2" } ]\n'
    )
    (root / "exceptions" / "x.toml").write_text(
        '[[exception]]\nidentity = 5\npolicy = "p1"\napprover = "CCO"\nreason = "r"\nexpires = "tomorrow"\n'
    )
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        '[provisioner]\nmappings = "m"\n'
        '[[sources]]\nname = "s"\ntype = "ldif"\npath = "d.ldif"\n'
        '[[targets]]\nname = "t"\ntype = "postgresql"\ndsn = "host=x"\n'
    )
    err = run("validate", "-c", str(cfg)).stderr
    rules, sod, exc = root / "rules" / "r.toml", root / "sod" / "s.toml", root / "exceptions" / "x.toml"
    assert f"{rules}:1: rule 'a': 'description' must be a string, not an integer 5" in err, err
    assert f"{rules}:7: rule: 'id' must be a string (letters, digits, '_', '.', '-'), not an integer 7" in err, err
    assert f"{sod}:1: policy 'p1': 'description' must be a string, not an array ['x']" in err, err
    assert f"{exc}:1: exception: 'identity' must be a string, not an integer 5" in err, err
    assert f"{exc}:1: exception: 'expires' must be a date such as 2027-03-31, not the text 'tomorrow'" in err, err
    assert "is required" not in err, err


def test_plan_and_apply_refuse_rules_validate_refuses(tmp_path: Path, ldap_ou: LdapOu, role_prefix: str) -> None:
    """A rule reading an attribute no source maps never matches: an unattended ``apply`` (cron)
    would revoke every trader's access on a typo. ``plan`` and ``apply`` refuse what ``validate``
    refuses, naming file, line, rule and attribute, and change nothing."""
    p = role_prefix
    ldap_ou.add_user("ann", **person("Trading", "Equity Trader"))
    setup = make_setup(tmp_path, ldap_ou.config(name=f"{p}src"), p)
    assert run("apply", "-c", str(setup.path), "--reason", "CHG-1").returncode == 0
    traders = {f"{p}trade_executor", f"{p}trade_reader"}
    assert memberships(p)[f"{p}ann"] == traders
    rules = tmp_path / "mappings" / "rules" / "r.toml"
    rules.write_text(rules.read_text().replace('attr = "department", equals = "Trading"', 'attr = "departmnet", equals = "Trading"'))
    for command in ("plan", "apply"):
        res = run(command, "-c", str(setup.path), "--reason", "CHG-2") if command == "apply" else run(command, "-c", str(setup.path))
        assert res.returncode == 1, (command, res.stdout, res.stderr)
        assert f"{rules}:2: rule 'desk-traders' reads attribute 'departmnet', which no source maps" in res.stderr, res.stderr
    assert memberships(p)[f"{p}ann"] == traders


def test_a_table_where_an_array_of_tables_belongs_is_named_not_a_traceback(tmp_path: Path) -> None:
    """E2E finding (session 14): ``[case]`` written for ``[[case]]`` in mappings/tests/ (and
    ``role = "..."`` in a catalog file, a bare value in ``rule = [...]``) made ``validate`` -- and
    every ``plan``, ``apply`` and ``rules test``, which load the same folders -- die with a Python
    traceback (AttributeError) instead of naming the file, beside every other problem."""
    root = tmp_path / "m"
    for sub in ("rules", "roles", "tests"):
        (root / sub).mkdir(parents=True)
    (root / "rules" / "r.toml").write_text(
        '[[rule]]\nid = "a"\ndescription = "d"\ngrant = ["x_reader"]\nwhen = { attr = "department", equals = "T" }\n'
    )
    (root / "rules" / "s.toml").write_text('rule = ["x_reader"]\n')
    (root / "roles" / "c.toml").write_text('role = "x_reader"\n')
    (root / "tests" / "t.toml").write_text('[case]\nname = "reader"\nattributes = { department = "T" }\nexpect = []\n')
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        '[provisioner]\nmappings = "m"\n'
        '[[sources]]\nname = "s"\ntype = "ldif"\npath = "d.ldif"\n'
        '[[targets]]\nname = "t"\ntype = "postgresql"\ndsn = "host=x"\n'
    )
    for args in (("validate", "-c", str(cfg)), ("rules", "test", "--mappings", str(root))):
        res = run(*args)
        assert res.returncode == 1, (args, res.stdout, res.stderr)
        assert "Traceback" not in res.stderr, (args, res.stderr)
        assert f"{root / 'tests' / 't.toml'}: 'case' must be an array of tables ([[case]])" in res.stderr, res.stderr
        assert f"{root / 'roles' / 'c.toml'}: 'role' must be a table of [role.NAME] tables" in res.stderr, res.stderr
        assert f"{root / 'rules' / 's.toml'}:1: rule: [[rule]] must be a table" in res.stderr, res.stderr


def test_case_sensitive_of_the_wrong_type_is_an_error_not_true(tmp_path: Path) -> None:
    """E2E finding (session 14): ``case_sensitive = "false"`` (a string) was read as true
    (``bool("false")``): the condition turned case-sensitive and stopped matching HR's
    "Trader" -- every trader's role revoked by the next apply -- while validate said OK."""
    root = tmp_path / "m"
    (root / "rules").mkdir(parents=True)
    (root / "rules" / "r.toml").write_text(
        '[[rule]]\nid = "a"\ndescription = "d"\ngrant = ["x_reader"]\n'
        'when = { attr = "title", equals = "trader", case_sensitive = "false" }\n'
    )
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        '[provisioner]\nmappings = "m"\n'
        '[[sources]]\nname = "s"\ntype = "ldif"\npath = "d.ldif"\n'
        '[[targets]]\nname = "t"\ntype = "postgresql"\ndsn = "host=x"\n'
    )
    res = run("validate", "-c", str(cfg))
    assert res.returncode == 1, res.stdout + res.stderr
    assert f"{root / 'rules' / 'r.toml'}:1: rule 'a': when.case_sensitive: must be true or false" in res.stderr, res.stderr


def test_secret_references_plan_would_refuse_are_named_by_validate(tmp_path: Path) -> None:
    """E2E finding (session 14): a world-readable ``file:`` secret and an unset ``env:`` variable
    passed ``validate`` ("OK") while ``plan`` refused both. validate (offline, often in CI without
    the production secrets) now warns about each, naming the key and the reference."""
    (tmp_path / "m" / "rules").mkdir(parents=True)
    (tmp_path / "m" / "rules" / "r.toml").write_text(
        '[[rule]]\nid = "a"\ndescription = "d"\ngrant = ["x_reader"]\nwhen = { attr = "department", equals = "T" }\n'
    )
    secret = tmp_path / "pg.pass"
    secret.write_text("s3cr3t-e5-value\n")
    secret.chmod(0o644)
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        '[provisioner]\nmappings = "m"\n'
        '[[sources]]\nname = "s"\ntype = "ldif"\npath = "d.ldif"\n'
        '[[targets]]\nname = "t"\ntype = "postgresql"\ndsn = "host=x"\npassword = "file:pg.pass"\n'
        '[[alerts.webhooks]]\nname = "sec"\nurl = "env:E5_SURELY_UNSET_HOOK"\n'
    )
    res = run("validate", "-c", str(cfg))
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"warning: {cfg}: targets[0].password: secret file:{secret}: {secret} is world-readable" in res.stderr, (
        res.stderr)
    assert (f"warning: {cfg}: alerts.webhooks[0].url: secret env:E5_SURELY_UNSET_HOOK: environment variable "
            "E5_SURELY_UNSET_HOOK is not set") in res.stderr, res.stderr
    assert "s3cr3t-e5-value" not in res.stderr


def test_a_rule_test_case_key_of_the_wrong_type_says_so(tmp_path: Path) -> None:
    """As for rules, policies and exceptions: a rule test case's ``name = 1`` is there with the
    wrong type; validate called it missing ("'name' is required")."""
    root = tmp_path / "m"
    for sub in ("rules", "tests"):
        (root / sub).mkdir(parents=True)
    (root / "rules" / "r.toml").write_text(
        '[[rule]]\nid = "a"\ndescription = "d"\ngrant = ["x_reader"]\nwhen = { attr = "department", equals = "T" }\n'
    )
    (root / "tests" / "t.toml").write_text('[[case]]\nname = 1\nexpect = []\n')
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        '[provisioner]\nmappings = "m"\n'
        '[[sources]]\nname = "s"\ntype = "ldif"\npath = "d.ldif"\n'
        '[[targets]]\nname = "t"\ntype = "postgresql"\ndsn = "host=x"\n'
    )
    err = run("validate", "-c", str(cfg)).stderr
    assert f"{root / 'tests' / 't.toml'}:1: 'name' must be a string, not an integer 1" in err, err
    assert "is required" not in err, err
