"""Alert channels: an incoming webhook (Slack / Teams), email over SMTP with
STARTTLS, and the structlog event every alert always produces.

Each channel ``send`` raises :class:`ChannelFailed` on any failure; the
dispatcher logs it and moves on, so a dead channel never blocks a run.
"""

from __future__ import annotations

import http.client
import json
import smtplib
import ssl
import urllib.error
import urllib.request
from email.message import EmailMessage
from typing import Protocol

from provisioner.config import EmailChannelConfig, WebhookChannelConfig
from provisioner.core.governance.alerts import Alert
from provisioner.errors import ProvisionerError, SecretError


class ChannelFailed(ProvisionerError):
    """An alert could not be delivered on one channel."""


class Channel(Protocol):
    name: str

    def send(self, alert: Alert) -> None: ...


def webhook_body(alert: Alert) -> dict[str, object]:
    """One JSON body for Slack and Teams incoming webhooks: both show the top-level ``text``."""
    facts = "\n".join(f"*{k}*: {v}" for k, v in sorted(alert.facts.items()))
    text = f"[{alert.severity.value.upper()}] {alert.title}\n{alert.body}" + (f"\n{facts}" if facts else "")
    return {"text": text, "title": alert.title, "alert": alert.to_json()}


class WebhookChannel:
    def __init__(self, cfg: WebhookChannelConfig, timeout: float) -> None:
        self.name = f"webhook:{cfg.name}"
        self._url = cfg.url
        self._timeout = timeout

    def send(self, alert: Alert) -> None:
        try:
            url = self._url.resolve().strip()  # a secret's trailing newline is no part of a URL
        except SecretError as exc:
            raise ChannelFailed(str(exc)) from exc
        if not url.startswith(("https://", "http://")):
            raise ChannelFailed(f"{self._url.ref} does not hold an http(s) URL")
        data = json.dumps(webhook_body(alert)).encode()
        try:
            req = urllib.request.Request(  # noqa: S310 - scheme checked above
                url, data=data, method="POST", headers={"Content-Type": "application/json"}
            )
            with urllib.request.urlopen(req, timeout=self._timeout) as resp:  # noqa: S310
                resp.read(1024)
        except urllib.error.HTTPError as exc:
            raise ChannelFailed(f"HTTP {exc.code} {exc.reason}") from None
        except urllib.error.URLError as exc:
            raise ChannelFailed(f"URLError: {exc.reason}") from None
        except (ValueError, http.client.InvalidURL) as exc:  # they quote the URL (the credential)
            raise ChannelFailed(f"{self._url.ref} does not hold a valid URL ({type(exc).__name__}; "
                                "the URL is not shown)") from None
        except OSError as exc:
            raise ChannelFailed(f"{type(exc).__name__}: {exc}") from None


class EmailChannel:
    def __init__(self, cfg: EmailChannelConfig, timeout: float) -> None:
        self.name = "email"
        self._cfg = cfg
        self._timeout = timeout

    def send(self, alert: Alert) -> None:
        cfg = self._cfg
        msg = EmailMessage()
        msg["Subject"] = f"[provisioner {alert.severity.value}] {alert.title}"
        msg["From"] = cfg.from_
        msg["To"] = ", ".join(cfg.to)
        facts = "\n".join(f"{k}: {v}" for k, v in sorted(alert.facts.items()))
        msg.set_content(f"{alert.body}\n\n{facts}\n\nalert key: {alert.key}\n")
        try:
            context = ssl.create_default_context(cafile=cfg.ca_file)
            with smtplib.SMTP(cfg.host, cfg.port, timeout=self._timeout) as smtp:
                smtp.ehlo()
                if not smtp.has_extn("starttls"):
                    raise ChannelFailed(f"{cfg.host}:{cfg.port} does not offer STARTTLS; refusing to send")
                smtp.starttls(context=context)
                smtp.ehlo()
                if cfg.username:
                    password = cfg.password.resolve() if cfg.password else ""
                    smtp.login(cfg.username, password)
                smtp.send_message(msg)
        except ChannelFailed:
            raise
        except (smtplib.SMTPException, OSError, SecretError, ssl.SSLError) as exc:
            raise ChannelFailed(f"{type(exc).__name__}: {exc}") from None
