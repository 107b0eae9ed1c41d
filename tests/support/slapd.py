"""A private, throw-away OpenLDAP server for tests and benchmarks.

``Slapd`` writes a slapd.conf into a temporary directory, optionally bulk-loads
entries with ``slapadd`` (offline, far faster than network adds), starts slapd
in the foreground on a free 127.0.0.1 port and kills it on ``stop()``.
With ``tls=True`` it generates a CA and a server certificate and also listens
on ``ldaps://``; StartTLS works on the plain port.
"""

from __future__ import annotations

import base64
import ctypes
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import ldap3

from provisioner.config import LdapSourceConfig
from provisioner.secrets import SecretRef

SLAPD = Path("/usr/sbin/slapd")
SLAPADD = Path("/usr/sbin/slapadd")
SCHEMA_DIR = Path("/etc/ldap/schema")
HR_SCHEMA = Path(__file__).resolve().parents[2] / "provisioner" / "resources" / "hr.schema"
INSTALL_HINT = "run scripts/install-deps (installs the Debian packages slapd and ldap-utils)"

Value = str | bytes
Record = tuple[str, Mapping[str, Sequence[Value] | Value]]
"""One LDIF entry: its DN and attribute -> value(s)."""

SUFFIX = "dc=example,dc=test"
ADMIN_DN = f"cn=admin,{SUFFIX}"
ADMIN_PASSWORD = "admin-secret"
READER_DN = f"cn=reader,{SUFFIX}"
READER_PASSWORD = "reader-secret"


class SlapdMissing(RuntimeError):
    pass


def require_binaries() -> None:
    for binary in (SLAPD, SLAPADD):
        if not binary.exists():
            raise SlapdMissing(f"{binary} not found: {INSTALL_HINT}")


def _die_with_parent() -> None:
    """Linux: SIGTERM slapd when the test process dies, so none is orphaned."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --------------------------------------------------------------------------- LDIF


def _safe(value: str) -> bool:
    if not value:
        return True
    if value[0] in " :<" or value[-1] == " ":
        return False
    return all(32 <= ord(c) < 127 for c in value)


def _line(attr: str, value: Value) -> str:
    if isinstance(value, str) and _safe(value):
        return f"{attr}: {value}"
    raw = value.encode() if isinstance(value, str) else value
    return f"{attr}:: {base64.b64encode(raw).decode()}"


def format_record(dn: str, attrs: Mapping[str, Sequence[Value] | Value]) -> str:
    """One LDIF record (no trailing blank line)."""
    lines = [_line("dn", dn)]
    for attr, values in attrs.items():
        if isinstance(values, str | bytes):
            values = [values]
        lines.extend(_line(attr, v) for v in values)
    return "\n".join(lines) + "\n"


def format_ldif(records: Iterable[Record]) -> str:
    return "\n".join(format_record(dn, attrs) for dn, attrs in records)


def base_records(suffix: str = SUFFIX) -> list[Record]:
    """The empty DIT: suffix, read-only bind user, ou=people, ou=groups."""
    dc = suffix.split(",")[0].split("=")[1]
    return [
        (suffix, {"objectClass": ["dcObject", "organization"], "dc": dc, "o": dc}),
        (
            f"cn=reader,{suffix}",
            {
                "objectClass": ["organizationalRole", "simpleSecurityObject"],
                "cn": "reader",
                "userPassword": READER_PASSWORD,
            },
        ),
        (f"ou=people,{suffix}", {"objectClass": "organizationalUnit", "ou": "people"}),
        (f"ou=groups,{suffix}", {"objectClass": "organizationalUnit", "ou": "groups"}),
    ]


# --------------------------------------------------------------------------- server


class Slapd:
    """One private slapd.  Use as a context manager or call start()/stop()."""

    def __init__(
        self,
        *,
        sizelimit: int | str = 1000,
        limits: Sequence[str] = (),
        tls: bool = False,
        workdir: Path | None = None,
        suffix: str = SUFFIX,
    ) -> None:
        require_binaries()
        self.suffix = suffix
        self.admin_dn = f"cn=admin,{suffix}"
        self.reader_dn = f"cn=reader,{suffix}"
        self._own_dir = workdir is None
        self.dir = workdir or Path(tempfile.mkdtemp(prefix="slapd-"))
        self.sizelimit = sizelimit
        self.limits = list(limits)
        self.tls = tls
        self.port = free_port()
        self.tls_port = free_port() if tls else 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.ca_file: Path | None = None
        self._conf = self.dir / "slapd.conf"
        (self.dir / "db").mkdir(exist_ok=True)
        if tls:
            from tests.support.certs import make_ca_and_server

            self.ca_file = make_ca_and_server(self.dir)
        self._conf.write_text(self._config_text())
        self.reader_password_file = self.dir / "reader.pw"
        self.reader_password_file.write_text(READER_PASSWORD + "\n")
        self.reader_password_file.chmod(0o600)
        self._loaded_base = False

    # ---- configuration

    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    @property
    def ldaps_url(self) -> str:
        return f"ldaps://127.0.0.1:{self.tls_port}"

    def _config_text(self) -> str:
        schemas = [SCHEMA_DIR / f"{n}.schema" for n in ("core", "cosine", "inetorgperson", "nis")]
        lines = [f"include {p}" for p in [*schemas, HR_SCHEMA]]
        lines += [
            f"pidfile {self.dir}/slapd.pid",
            f"argsfile {self.dir}/slapd.args",
            "modulepath /usr/lib/ldap",
            "moduleload back_mdb",
            "moduleload syncprov",
            f"sizelimit {self.sizelimit}",
        ]
        if self.tls:
            lines += [
                f"TLSCACertificateFile {self.dir}/ca.pem",
                f"TLSCertificateFile {self.dir}/server.pem",
                f"TLSCertificateKeyFile {self.dir}/server.key",
            ]
        lines += [
            "database mdb",
            "maxsize 4294967296",
            f'suffix "{self.suffix}"',
            f'rootdn "{self.admin_dn}"',
            f"rootpw {ADMIN_PASSWORD}",
            f"directory {self.dir}/db",
            "index objectClass eq",
            "index uid,cn,member,uniqueMember eq",
            "index entryCSN,entryUUID,modifyTimestamp eq",
            *self.limits,
            "access to attrs=userPassword by anonymous auth by * none",
            "access to * by users read by * none",
            # the sync provider keeps the suffix's contextCSN, which moves on every write
            # (the incremental reader's "nothing written since" check), as replicated setups have
            "overlay syncprov",
        ]
        return "\n".join(lines) + "\n"

    # ---- offline bulk load

    def slapadd(self, records: Iterable[Record] | Path, *, with_base: bool = True) -> float:
        """Load entries (or an LDIF file) offline, server stopped; the first call
        also adds the base DIT unless ``with_base=False``.  Returns seconds taken."""
        if self.proc is not None:
            raise RuntimeError("slapadd needs the server stopped")
        if isinstance(records, Path):
            ldif = records
            if with_base and not self._loaded_base:
                self.slapadd([])
        else:
            if with_base and not self._loaded_base:
                records = [*base_records(self.suffix), *records]
            ldif = self.dir / "bulk.ldif"
            ldif.write_text(format_ldif(records), encoding="utf-8")
        self._loaded_base = True
        started = time.perf_counter()
        result = subprocess.run(
            [str(SLAPADD), "-q", "-w", "-f", str(self._conf), "-l", str(ldif)],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"slapadd failed ({result.returncode}): {result.stderr[-2000:]}")
        return time.perf_counter() - started

    # ---- process

    def start(self, timeout: float = 15.0) -> Slapd:
        if self.proc is not None:
            return self
        if not self._loaded_base:
            self.slapadd([])
        urls = self.url + "/" + (f" {self.ldaps_url}/" if self.tls else "")
        log = (self.dir / "slapd.log").open("ab")
        self.proc = subprocess.Popen(
            [str(SLAPD), "-f", str(self._conf), "-h", urls, "-d", "0"],
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )
        log.close()
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                log = (self.dir / "slapd.log").read_text(errors="replace")
                self.proc = None
                raise RuntimeError(f"slapd exited during start-up:\n{log[-3000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"slapd did not accept connections within {timeout}s")

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def restart_with(self, records: Iterable[Record]) -> float:
        """Stop, slapadd ``records``, start again; returns slapadd seconds."""
        self.stop()
        took = self.slapadd(records)
        self.start()
        return took

    def cleanup(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Slapd:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    # ---- online helpers (admin connection)

    def admin(self) -> ldap3.Connection:
        server = ldap3.Server(self.url, get_info=ldap3.NONE)
        return ldap3.Connection(server, self.admin_dn, ADMIN_PASSWORD, auto_bind=True, raise_exceptions=True)

    def add(self, records: Iterable[Record]) -> int:
        """Add entries over the network (slower than slapadd); returns the count."""
        count = 0
        with self.admin() as conn:
            for dn, attrs in records:
                conn.add(dn, attributes=_ldap3_attrs(attrs))
                count += 1
        return count

    def modify(self, dn: str, **replace: Sequence[Value] | Value) -> None:
        changes = {a: [(ldap3.MODIFY_REPLACE, _as_list(v))] for a, v in replace.items()}
        with self.admin() as conn:
            conn.modify(dn, changes)

    def delete(self, dn: str) -> None:
        with self.admin() as conn:
            conn.delete(dn)

    def source_config(self, **overrides: Any) -> LdapSourceConfig:
        """A LdapSourceConfig bound as the read-only reader user."""
        data: dict[str, Any] = {
            "type": "ldap",
            "name": "test-ldap",
            "url": self.url,
            "bind_dn": self.reader_dn,
            "bind_password": SecretRef(f"file:{self.reader_password_file}"),
            "user_base": f"ou=people,{self.suffix}",
            "group_base": f"ou=groups,{self.suffix}",
            "timeout": 5.0,
            **overrides,
        }
        return LdapSourceConfig.model_validate(data)


def _as_list(value: Sequence[Value] | Value) -> list[Value]:
    return [value] if isinstance(value, str | bytes) else list(value)


def _ldap3_attrs(attrs: Mapping[str, Sequence[Value] | Value]) -> dict[str, list[Value]]:
    return {a: _as_list(v) for a, v in attrs.items()}
