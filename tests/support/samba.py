"""A throw-away Samba Active Directory domain controller for tests and bench.

Provisioned under a temp dir (``samba-tool domain provision -s /dev/null``,
no DNS), served in the foreground (``samba -i -M single``) with every pid,
socket and log directory inside that dir, LDAP only (``server services = ldap``)
on a loopback address of its own (127.0.0.2 .. 127.0.0.254, the first whose
ports 389/636 are free: Samba's LDAP ports are fixed).  TLS uses a throw-away
CA generated here (``ca_file``); simple binds over ldap:// are allowed.

The server runs under ``timeout`` (``max_runtime`` seconds) and dies with the
test process (PR_SET_PDEATHSIG), so a crashed run cannot leave it behind; it
is stopped by PID.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import ldap3
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from provisioner.config import LdapSourceConfig
from provisioner.secrets import SecretRef
from tests.support.certs import make_ca
from tests.support.slapd import _die_with_parent

SAMBA = Path("/usr/sbin/samba")
SAMBA_TOOL = Path("/usr/bin/samba-tool")
LDBADD = Path("/usr/bin/ldbadd")
INSTALL_HINT = "install the Samba AD DC packages with scripts/install-deps"
REALM = "CORP.TEST"
DOMAIN = "CORP"
BASE = "DC=corp,DC=test"
ADMIN_DN = f"CN=Administrator,CN=Users,{BASE}"
FILETIME_NEVER = "9223372036854775807"
UAC_NORMAL = 0x200
UAC_DISABLED = 0x202

Value = str | bytes | int
Record = tuple[str, Mapping[str, Sequence[Value] | Value]]


class SambaMissing(RuntimeError):
    pass


def require_binaries() -> None:
    for binary in (SAMBA, SAMBA_TOOL, LDBADD):
        if not binary.exists():
            raise SambaMissing(f"{binary} not found: {INSTALL_HINT}")


def _ports_free(host: str) -> bool:
    for port in (389, 636):
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, port))
            except OSError:
                return False
    return True


def free_loopback() -> str:
    """A 127.0.0.x address whose LDAP ports nobody listens on (several test
    sessions may run a DC at the same time)."""
    candidates = list(range(2, 255))
    secrets.SystemRandom().shuffle(candidates)
    for last in candidates:
        host = f"127.0.0.{last}"
        if _ports_free(host):
            return host
    raise RuntimeError("no loopback address with free ports 389/636")


def _server_cert(directory: Path, host: str) -> Path:
    ca_key, ca_cert = make_ca("provisioner test AD CA")
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host))]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    (directory / "ca.pem").write_bytes(ca_cert.public_bytes(pem))
    (directory / "cert.pem").write_bytes(cert.public_bytes(pem))
    keyfile = directory / "key.pem"
    keyfile.write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    keyfile.chmod(0o600)
    return directory / "ca.pem"


def _ldif_value(attr: str, value: Value) -> str:
    if isinstance(value, int):
        value = str(value)
    if isinstance(value, str) and value.isascii() and value == value.strip() and not value.startswith((":", "<")):
        return f"{attr}: {value}"
    import base64

    raw = value if isinstance(value, bytes) else value.encode()
    return f"{attr}:: {base64.b64encode(raw).decode()}"


def format_ldif(records: Iterable[Record]) -> str:
    blocks = []
    for dn, attrs in records:
        lines = [_ldif_value("dn", dn)]
        for attr, values in attrs.items():
            for v in values if isinstance(values, list | tuple) else [values]:
                lines.append(_ldif_value(attr, v))
        blocks.append("\n".join(lines) + "\n")
    return "\n".join(blocks)


class SambaDC:
    """``SambaDC().provision().start()``; ``cleanup()`` stops it and removes the dir."""

    def __init__(self, max_runtime: float = 3600.0, host: str | None = None) -> None:
        require_binaries()
        self.dir = Path(tempfile.mkdtemp(prefix="provisioner-samba-"))
        self.host = host or free_loopback()
        self.password = "Adm1n!" + secrets.token_hex(8)
        self.max_runtime = max_runtime
        self.proc: subprocess.Popen[bytes] | None = None
        self.conf = self.dir / "etc" / "smb.conf"
        self.ca_file = str(self.dir / "tls" / "ca.pem")

    @property
    def url(self) -> str:
        return f"ldap://{self.host}"

    @property
    def ldaps_url(self) -> str:
        return f"ldaps://{self.host}"

    @property
    def sam_ldb(self) -> Path:
        return self.dir / "private" / "sam.ldb"

    # ---- lifecycle

    def provision(self) -> float:
        started = time.perf_counter()
        cmd = [
            str(SAMBA_TOOL), "domain", "provision", "-s", "/dev/null",
            f"--targetdir={self.dir}", f"--realm={REALM}", f"--domain={DOMAIN}",
            "--server-role=dc", "--dns-backend=NONE", f"--adminpass={self.password}",
            f"--host-ip={self.host}",
            f"--option=interfaces = {self.host}/8", "--option=bind interfaces only = yes",
            "--option=server services = ldap",
        ]  # fmt: skip
        result = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=900)  # minutes on a loaded machine
        if result.returncode != 0:
            raise RuntimeError(f"samba-tool domain provision failed:\n{result.stderr[-3000:]}")
        tls = self.dir / "tls"
        tls.mkdir()
        _server_cert(tls, self.host)
        run = self.dir / "run"
        run.mkdir()
        extra = {
            "pid directory": run,
            "ncalrpc dir": run / "ncalrpc",
            "winbindd socket directory": run / "winbindd",
            "ntp signd socket directory": run / "ntp_signd",
            "log file": self.dir / "samba.log",
            "ldap server require strong auth": "no",
            "tls enabled": "yes",
            "tls keyfile": tls / "key.pem",
            "tls certfile": tls / "cert.pem",
            "tls cafile": tls / "ca.pem",
        }
        text = self.conf.read_text()
        lines = "".join(f"\t{k} = {v}\n" for k, v in extra.items())
        self.conf.write_text(text.replace("[global]\n", "[global]\n" + lines, 1))
        return time.perf_counter() - started

    def start(self, timeout: float = 60.0) -> SambaDC:
        if self.proc is not None:
            return self
        if not _ports_free(self.host):
            raise RuntimeError(f"{self.host}: port 389 or 636 already in use")
        log = (self.dir / "samba.out").open("ab")
        self.proc = subprocess.Popen(
            ["timeout", "--kill-after=10", str(int(self.max_runtime)),
             str(SAMBA), "-i", "-M", "single", "-s", str(self.conf)],
            stdin=subprocess.PIPE,  # samba -i ends on EOF: also when this process dies
            stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                out = (self.dir / "samba.out").read_text(errors="replace")
                self.proc = None
                raise RuntimeError(f"samba exited during start-up:\n{out[-3000:]}")
            try:
                with socket.create_connection((self.host, 389), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"samba did not accept LDAP connections within {timeout}s")

    def stop(self) -> None:
        """Stop by PID: SIGTERM to ``timeout``, which passes it on to samba."""
        if self.proc is None:
            return
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    # ---- data

    def ldbadd(self, records: Iterable[Record]) -> float:
        """Bulk add straight into sam.ldb (works while the DC runs; much faster
        than LDAP adds); returns seconds."""
        started = time.perf_counter()
        path = self.dir / f"add-{secrets.token_hex(4)}.ldif"
        path.write_text(format_ldif(records))
        result = subprocess.run(
            [str(LDBADD), "--nosync", "-H", str(self.sam_ldb), str(path)],
            capture_output=True, text=True, check=False, timeout=1800,
        )  # fmt: skip
        path.unlink()
        if result.returncode != 0:
            raise RuntimeError(f"ldbadd failed: {result.stderr[-2000:]}{result.stdout[-1000:]}")
        return time.perf_counter() - started

    def admin(self) -> ldap3.Connection:
        server = ldap3.Server(self.url, get_info=ldap3.NONE)
        return ldap3.Connection(server, ADMIN_DN, self.password, auto_bind=True, raise_exceptions=True)

    def source_config(self, **overrides: Any) -> LdapSourceConfig:
        import os

        env = f"PROVISIONER_TEST_SAMBA_{secrets.token_hex(4).upper()}"
        os.environ[env] = self.password
        data: dict[str, Any] = {
            "type": "ldap",
            "name": f"ad-{secrets.token_hex(3)}",
            "preset": "ad",
            "url": self.url,
            "bind_dn": ADMIN_DN,
            "bind_password": SecretRef(f"env:{env}"),
            "ca_file": self.ca_file,
            "user_base": BASE,
            "group_base": BASE,
            "timeout": 60.0,
        }
        data.update(overrides)
        return LdapSourceConfig(**data)


def user_record(ou: str, name: str, **attrs: Value | Sequence[Value]) -> Record:
    values: dict[str, Sequence[Value] | Value] = {
        "objectClass": "user",
        "sAMAccountName": name,
        "userPrincipalName": f"{name}@corp.test",
        "userAccountControl": UAC_NORMAL,
    }
    values.update(attrs)
    return f"CN={name},{ou}", values


def group_record(ou: str, name: str, members: Sequence[str]) -> Record:
    values: dict[str, Sequence[Value] | Value] = {"objectClass": "group", "sAMAccountName": name}
    if members:
        values["member"] = list(members)
    return f"CN={name},{ou}", values
