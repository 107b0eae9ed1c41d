"""provisioner audit verify | show | export | checkpoint | keygen."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import click

from provisioner.cli.common import config_option
from provisioner.cli.group import cli
from provisioner.config import Config
from provisioner.core.governance.audit import EventKind
from provisioner.engine.installation import load, open_store
from provisioner.errors import ConfigError
from provisioner.review.chained import decision_problems
from provisioner.store.audit import AuditFilter, AuditRow, AuditTampered, StoredCheckpoint
from provisioner.store.shipping import read_shipped
from provisioner.store.signing import (
    VerifyReport,
    checkpoint_from_file,
    generate_key,
    load_public_key,
    load_signing_key,
    public_pem,
    sign_head,
    verify_chain,
)

CSV_FIELDS = ("seq", "at", "run_id", "kind", "actor", "trigger", "target", "role", "change", "reason",
              "before", "after", "prev_hash", "hash")


@cli.group()
def audit() -> None:
    """The tamper-evident audit trail: verify it, search it, export evidence."""


@audit.command()
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Where to write the private key.")
def keygen(out: str) -> None:
    """Create an Ed25519 signing key (PEM PKCS#8, mode 0600) and print its public key."""
    public = generate_key(out)
    click.echo(public_pem(public), nl=False)
    click.echo(f"Private key written to {out} (mode 0600). Configure it with:\n"
               f'  [audit]\n  signing_key = "file:{out}"', err=True)


@audit.command()
@config_option
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Checkpoint file (JSON) for WORM storage.")
@click.option("--adopt", is_flag=True,
              help="Sign a head no checkpoint of the configured key covers yet (a trail written before the key was "
                   "configured, or after a key rotation), after verifying the whole chain.")
def checkpoint(config_path: str, out: str, adopt: bool) -> None:
    """Sign the current head of the chain now and write the checkpoint to FILE."""
    cfg = load(config_path)
    if cfg.audit.signing_key is None:
        raise ConfigError(f"{cfg.path}: audit.signing_key is not set; create one with 'provisioner audit keygen'")
    key = load_signing_key(cfg.audit.signing_key)
    store = open_store(cfg)
    try:
        if adopt:
            report = verify_chain(store.audit, [], key.public_key())
            if report.problem is not None or report.checkpoint_problems:
                for line in _problems(report):
                    click.echo(line)
                raise AuditTampered("the chain does not verify; refusing to adopt it")
        stored = sign_head(store.audit, key, adopt=adopt)
    finally:
        store.close()
    with open(out, "w", encoding="utf-8") as fh:
        json.dump(stored.to_json(), fh, indent=2, sort_keys=True)
        fh.write("\n")
    cp = stored.checkpoint
    click.echo(f"Checkpoint n={cp.n} of {cp.count} record(s), head seq {cp.head_seq} {cp.head_hash} written to {out}")


@audit.command()
@config_option
@click.option("--checkpoint", "checkpoint_path", type=click.Path(exists=True, dir_okay=False),
              help="A checkpoint file (e.g. from WORM storage) the chain must still contain.")
@click.option("--checkpoints", "checkpoints_path", type=click.Path(exists=True),
              help="Shipped checkpoints: a directory of checkpoint files ([audit] checkpoint_dir) or one file; "
                   "default: the configured checkpoint_dir.")
@click.option("--public-key", "public_key_path", type=click.Path(exists=True, dir_okay=False),
              help="PEM public key trusted for checkpoint signatures (default: from [audit] signing_key).")
def verify(config_path: str, checkpoint_path: str | None, checkpoints_path: str | None,
           public_key_path: str | None) -> None:
    """Check every record's hash, link and time, the checkpoints and the run history. Exit 0 intact, 1 broken."""
    cfg = load(config_path)
    trusted = _trusted_key(cfg, public_key_path)
    cps: list[tuple[str, StoredCheckpoint]] = []
    if checkpoint_path:
        cps.append((checkpoint_path, checkpoint_from_file(checkpoint_path)))
    shipped = checkpoints_path or (
        str(cfg.resolve_path(cfg.audit.checkpoint_dir)) if cfg.audit.checkpoint_dir else None
    )
    if shipped and Path(shipped).exists():
        cps.extend(read_shipped(Path(shipped)))
    elif shipped:
        click.echo(f"BROKEN checkpoint directory {shipped} does not exist (shipped checkpoints lost)")
        sys.exit(1)
    max_age = timedelta(seconds=cfg.audit.checkpoint_max_age) if cfg.audit.checkpoint_max_age else None
    store = open_store(cfg)
    try:
        report = verify_chain(
            store.audit, cps, trusted, require_signed=cfg.audit.signing_key is not None or public_key_path is not None,
            max_age=max_age,
        )
        runs = store.run_history_problems() if report.problem is None else []
        reviews = decision_problems(store) if report.problem is None else []
    finally:
        store.close()
    click.echo(f"{report.count} record(s) checked, head seq {report.head_seq} {report.head_hash}")
    click.echo(f"{report.stored_checkpoints} stored checkpoint(s), {len(cps)} shipped/given checkpoint(s) checked")
    for cp in report.checked:
        click.echo(f"checkpoint OK: n={cp.n} seq {cp.head_seq} {cp.head_hash} signed at {cp.at} by {cp.key_id}")
    if not report.checked and trusted is None:
        click.echo("warning: no key to check checkpoints with; forged or truncated records cannot be detected",
                   err=True)
    for line in _problems(report):
        click.echo(line)
    for problem in runs:
        click.echo(f"BROKEN run history: {problem}")
    for problem in reviews:
        click.echo(f"BROKEN review decisions: {problem}")
    if not report.ok or runs or reviews:
        sys.exit(1)
    click.echo("OK: the audit trail is intact")


def _problems(report: VerifyReport) -> list[str]:
    out = [f"BROKEN checkpoint {p}" for p in report.checkpoint_problems]
    if report.problem is not None:
        out.append(f"BROKEN: first bad {report.problem.describe()}")
    out += [f"BROKEN signatures: {p.describe()}" for p in report.coverage]
    return out


def _trusted_key(cfg: Config, path: str | None) -> Any:
    if path:
        return load_public_key(path)
    if cfg.audit.signing_key is not None:
        return load_signing_key(cfg.audit.signing_key).public_key()
    return None


def _filters(f: Any) -> Any:
    for opt in reversed([
        click.option("--user", help="Records about this (login) role."),
        click.option("--role", help="Records granting / revoking this role (or about it)."),
        click.option("--target", help="Records on this target."),
        click.option("--since", help="From this time (ISO 8601, UTC if no offset)."),
        click.option("--until", help="Up to this time (ISO 8601, UTC if no offset)."),
        click.option("--run", "run_id", help="Records of one run."),
        click.option("--kind", "kinds", multiple=True, type=click.Choice([k.value for k in EventKind]),
                     help="Only this kind (repeatable)."),
    ]):
        f = opt(f)
    return f


def _time(value: str | None, name: str) -> datetime | None:
    if not value:
        return None
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 date or time", param_hint=name) from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _make_filter(user: str | None, role: str | None, target: str | None, since: str | None,
                 until: str | None, run_id: str | None, kinds: tuple[str, ...]) -> AuditFilter:
    return AuditFilter(user, role, target, _time(since, "--since"), _time(until, "--until"), run_id, kinds)


def _summary(c: dict[str, Any]) -> str:
    change = c.get("change")
    if isinstance(change, dict) and change.get("summary"):
        return str(change["summary"])
    after = c.get("after") or {}
    if c.get("kind") == "apply_intent":
        return f"about to apply {len(after.get('changes', []))} change(s)"
    return str(c.get("reason") or "")[:100]


@audit.command()
@config_option
@_filters
@click.option("--limit", type=int, default=0, help="Show at most N records (0: all).")
def show(config_path: str, user: str | None, role: str | None, target: str | None, since: str | None,
         until: str | None, run_id: str | None, kinds: tuple[str, ...], limit: int) -> None:
    """Records matching the filters, as a text table."""
    flt = _make_filter(user, role, target, since, until, run_id, kinds)
    cfg = load(config_path)
    store = open_store(cfg)
    shown = 0
    try:
        click.echo(f"{'seq':>7}  {'time (UTC)':<19}  {'kind':<16}  {'actor':<16}  {'target':<10}  {'role':<16}  what")
        for row in store.audit.iter_rows(flt):
            c = row.content
            at = str(c.get("at", ""))[:19].replace("T", " ")
            click.echo(f"{row.seq:>7}  {at:<19}  {c.get('kind', ''):<16}  {str(c.get('actor', ''))[:16]:<16}  "
                       f"{str(c.get('target') or '')[:10]:<10}  {str(c.get('role') or '')[:16]:<16}  {_summary(c)}")
            shown += 1
            if limit and shown >= limit:
                break
    finally:
        store.close()
    click.echo(f"{shown} record(s)", err=True)


@audit.command()
@config_option
@_filters
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl", show_default=True)
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Output file ('-' for stdout).")
def export(config_path: str, user: str | None, role: str | None, target: str | None, since: str | None,
           until: str | None, run_id: str | None, kinds: tuple[str, ...], fmt: str, out: str) -> None:
    """Records matching the filters with seq, prev_hash and hash, for evidence requests."""
    flt = _make_filter(user, role, target, since, until, run_id, kinds)
    cfg = load(config_path)
    store = open_store(cfg)
    try:
        if out == "-":
            n = _write(store.audit.iter_rows(flt), fmt, sys.stdout)
        else:
            with open(out, "w", encoding="utf-8", newline="") as fh:
                n = _write(store.audit.iter_rows(flt), fmt, fh)
    finally:
        store.close()
    click.echo(f"{n} record(s) exported to {out}", err=True)


def _write(rows: Iterator[AuditRow], fmt: str, fh: IO[str]) -> int:
    n = 0
    writer = csv.DictWriter(fh, CSV_FIELDS) if fmt == "csv" else None
    if writer is not None:
        writer.writeheader()
    for row in rows:
        record = {"seq": row.seq, "content": row.content, "prev_hash": row.prev_hash, "hash": row.hash}
        if writer is None:
            fh.write(json.dumps(record, sort_keys=True, ensure_ascii=False) + "\n")
        else:
            c = row.content
            flat = {k: c.get(k) for k in CSV_FIELDS if k in c}
            for k in ("change", "before", "after"):
                flat[k] = json.dumps(c.get(k), sort_keys=True, ensure_ascii=False)
            writer.writerow({**flat, "seq": row.seq, "prev_hash": row.prev_hash, "hash": row.hash})
        n += 1
    return n
