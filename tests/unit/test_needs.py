"""Which canonical attributes a rule set, the naming template and the lifecycle need."""

from __future__ import annotations

from provisioner.config import LdapSourceConfig
from provisioner.core.identity.needs import ALL, LIFECYCLE_ATTRIBUTES, referenced_attributes, source_needs
from provisioner.core.identity.rules import RuleSet, build_ruleset
from provisioner.sources.attributes import attribute_map, requested_attributes

RULES = """
[[rule]]
id = "a"
description = "a"
grant = ["dept_{department}", "x_{cost_center}"]
when.all = [ { attr = "title", regex = "trader" }, { not = { attr = "Employee_Type", equals = "intern" } } ]

[[rule]]
id = "b"
description = "b"
grant = ["grp"]
when.any = [ { group = "admins" }, { attr = "company", present = true } ]
enabled = false
"""


def _rules() -> RuleSet:
    rules, problems = build_ruleset([("r.toml", RULES)])
    assert not problems
    return rules


def test_conditions_placeholders_and_naming_template_are_collected() -> None:
    names = referenced_attributes(_rules(), "{username}_{employee_id}")
    assert names == {"department", "cost_center", "title", "employee_type", "company", "username", "employee_id"}


def test_needs_add_lifecycle_and_identity() -> None:
    needs = source_needs(_rules())
    assert needs.attributes is not None
    assert needs.attributes >= LIFECYCLE_ATTRIBUTES
    assert {"stable_id", "username"} <= needs.attributes
    assert needs.wants("title") and not needs.wants("email")
    assert ALL.wants("email")


def test_restricted_attribute_map_requests_only_what_is_needed() -> None:
    cfg = LdapSourceConfig(type="ldap", name="s", url="ldap://h", user_base="dc=x")
    amap = attribute_map(cfg).restrict(source_needs(_rules()))
    attrs = requested_attributes(amap)
    assert set(attrs) == {"entryUUID", "uid", "departmentNumber", "title", "employeeType", "hrStatus",
                          "hrHireDate", "hrLeaveDate", "employeeNumber"}
    assert requested_attributes(attribute_map(cfg).restrict(ALL)) == requested_attributes(attribute_map(cfg))


def test_preset_dependent_filter_defaults() -> None:
    ad = LdapSourceConfig(type="ldap", name="s", url="ldap://h", user_base="dc=x", preset="ad")
    assert ad.user_filter == "(&(objectCategory=person)(objectClass=user))"
    assert ad.group_filter == "(objectClass=group)"
    ol = LdapSourceConfig(type="ldap", name="s", url="ldap://h", user_base="dc=x")
    assert "groupOfUniqueNames" in ol.group_filter and ol.user_filter == "(objectClass=inetOrgPerson)"
    own = LdapSourceConfig(type="ldap", name="s", url="ldap://h", user_base="dc=x", preset="ad", user_filter="(cn=*)")
    assert own.user_filter == "(cn=*)"
