"""Source configuration models (``[[sources]]``), re-exported by :mod:`provisioner.config`.

One model per directory type (LDAP, LDIF, Entra ID) over a shared base: name,
preset, attribute map and who gets a login.
"""

from __future__ import annotations

import contextlib
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from provisioner.target_config import Secret
from provisioner.transform_config import AttributeTransform


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


class _SourceBase(_Model):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    preset: Literal["openldap", "ad"] = "openldap"
    attributes: dict[str, str | AttributeTransform] = {}
    """Canonical attribute name -> directory attribute (or a transform table), overriding the preset."""
    login_for: Literal["everyone", "granted"] = "everyone"
    """granted: an identity no rule grants anything gets no role at all."""

    @model_validator(mode="after")
    def _check_formats(self) -> _SourceBase:
        for name, value in self.attributes.items():
            if isinstance(value, AttributeTransform) and value.all_formats and name not in ("hire_date", "leave_date"):
                raise ValueError(f"attributes.{name}: format(s) apply to hire_date and leave_date only")
        return self
    stable_id_attribute: str | None = None
    username_attribute: str | None = None


LDAP_FILTER_DEFAULTS: dict[str, dict[str, str]] = {
    "openldap": {
        "user_filter": "(objectClass=inetOrgPerson)",
        "group_filter": "(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames))",
    },
    "ad": {
        "user_filter": "(&(objectCategory=person)(objectClass=user))",
        "group_filter": "(objectClass=group)",
    },
}
"""Per-preset defaults of ``user_filter`` / ``group_filter`` when the config omits them."""
_SECONDS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


class LdapSourceConfig(_SourceBase):
    type: Literal["ldap"]
    url: str = Field(pattern=r"^ldaps?://")
    bind_dn: str | None = None
    bind_password: Secret | None = None
    start_tls: bool = False
    ca_file: str | None = None
    user_base: str
    user_filter: str = "(objectClass=inetOrgPerson)"
    """Default depends on the preset (see LDAP_FILTER_DEFAULTS)."""
    group_base: str | None = None
    group_filter: str = "(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames))"
    page_size: int = Field(500, ge=1, le=100_000)
    range_step: int | None = Field(None, ge=1)
    """Values per ``member;range=`` request (AD); None = as many as the server returns."""
    timeout: float = Field(10.0, gt=0)
    incremental: bool = True
    """Read only what changed since the last run (needs the state store); false = full read every run."""
    full_read_every: float = Field(86400.0, ge=0)
    """Seconds (or "24h", "30m") between scheduled full reads when incremental; 0 = every run."""
    deletion_scan_every: float = Field(0.0, ge=0)
    """Incremental: seconds (or "1h") between id-only scans for deleted entries; 0 = every run.
    Longer = cheaper runs, but a *deleted* entry keeps its access until the next scan."""
    nested_groups: Literal["client", "in_chain"] = "client"
    """client: resolve nesting from the groups read; in_chain: AD's in-chain matching rule per rule group."""

    @model_validator(mode="before")
    @classmethod
    def _preset_defaults(cls, data: Any) -> Any:
        if isinstance(data, dict):
            defaults = LDAP_FILTER_DEFAULTS.get(str(data.get("preset", "openldap")), {})
            data = {**defaults, **data}
            for key in ("full_read_every", "deletion_scan_every"):
                every = data.get(key)
                if isinstance(every, str) and every.strip()[-1:].lower() in _SECONDS:
                    text = every.strip().lower()
                    with contextlib.suppress(ValueError):  # else left for the float validator to report
                        data[key] = float(text[:-1]) * _SECONDS[text[-1]]
        return data


class LdifSourceConfig(_SourceBase):
    type: Literal["ldif"]
    path: str
    user_filter_class: str = "inetOrgPerson"
    group_filter_class: str = "groupOfNames"


class EntraSourceConfig(_SourceBase):
    type: Literal["entra"]
    tenant_id: str
    client_id: str
    client_secret: Secret | None = None
    certificate_key_file: str | None = None
    certificate_thumbprint: str | None = None
    authority_host: str = "https://login.microsoftonline.com"
    graph_url: str = "https://graph.microsoft.com"
    user_filter: str | None = None
    """OData ``$filter`` for users (full reads only: Graph's users/delta has no $filter)."""
    page_size: int = Field(999, ge=1, le=999)
    max_retries: int = Field(5, ge=0)
    full_resync_hours: float = Field(24.0, gt=0)
    username_from: Literal["upn_local", "upn", "mailNickname", "onPremisesSamAccountName"] = "upn_local"
    extension_attributes: dict[str, str] = {}
    """``extensionAttributeN`` -> canonical attribute name (onPremisesExtensionAttributes)."""
    delta: bool = True
    """Incremental reads with delta queries (needs the state store); false = full read every run."""
    max_retry_after: float = Field(120.0, ge=0)
    backoff_base: float = Field(0.5, ge=0)
    backoff_max: float = Field(30.0, ge=0)
    timeout: float = Field(30.0, gt=0)
    ca_file: str | None = None
    """Extra CA bundle for the authority and Graph endpoints (private proxies, tests)."""

    @model_validator(mode="after")
    def _check_credentials(self) -> EntraSourceConfig:
        has_cert = bool(self.certificate_key_file or self.certificate_thumbprint)
        if self.client_secret is None and not has_cert:
            raise ValueError("set client_secret, or certificate_key_file and certificate_thumbprint")
        if self.client_secret is not None and has_cert:
            raise ValueError("set either client_secret or a certificate, not both")
        if has_cert and not (self.certificate_key_file and self.certificate_thumbprint):
            raise ValueError("a certificate needs both certificate_key_file and certificate_thumbprint")
        if self.delta and self.user_filter:
            raise ValueError(
                "user_filter cannot be combined with delta = true (Graph's users/delta supports no "
                "$filter); set delta = false to read with a filter"
            )
        for key in self.extension_attributes:
            if not re.fullmatch(r"extensionAttribute([1-9]|1[0-5])", key):
                raise ValueError(f"extension_attributes: {key!r} is not extensionAttribute1..15")
        return self


SourceConfig = Annotated[LdapSourceConfig | LdifSourceConfig | EntraSourceConfig, Field(discriminator="type")]
