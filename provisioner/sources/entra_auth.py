"""msal confidential-client credentials for Microsoft Graph (client secret or
certificate).  msal keeps the token in its in-memory cache and asks for a new
one when it has expired; a token endpoint error becomes SourceUnavailable with
msal's ``error_description`` (never the secret)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import msal
import requests

from provisioner.config import EntraSourceConfig
from provisioner.errors import ConfigError, SourceUnavailable


class _Session(requests.Session):
    """A session whose configured CA bundle wins over ``REQUESTS_CA_BUNDLE`` /
    ``CURL_CA_BUNDLE`` (requests lets the environment override ``session.verify``)."""

    ca_file: str | None = None

    def merge_environment_settings(self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any) -> Any:
        settings = super().merge_environment_settings(url, proxies, stream, verify, cert)
        if self.ca_file and verify in (None, True):
            settings["verify"] = self.ca_file
        return settings


def make_session(cfg: EntraSourceConfig) -> requests.Session:
    """One HTTP session for the authority and Graph (connection reuse, CA bundle)."""
    session = _Session()
    session.ca_file = cfg.ca_file
    session.verify = cfg.ca_file or True
    session.headers["User-Agent"] = "provisioner-entra/1"
    return session


def client_credential(cfg: EntraSourceConfig) -> str | dict[str, str]:
    """The secret (resolved from its reference) or the certificate dict msal expects."""
    if cfg.client_secret is not None:
        return cfg.client_secret.resolve()
    assert cfg.certificate_key_file and cfg.certificate_thumbprint
    path = Path(cfg.certificate_key_file)
    try:
        pem = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"source {cfg.name}: certificate_key_file {path}: cannot read: {exc}") from exc
    if "PRIVATE KEY-----" not in pem:
        raise ConfigError(f"source {cfg.name}: certificate_key_file {path}: no PEM private key in it")
    thumbprint = cfg.certificate_thumbprint.replace(":", "").strip()
    return {"private_key": pem, "thumbprint": thumbprint}


class TokenProvider:
    """App-only tokens for ``<graph_url>/.default`` from ``<authority_host>/<tenant_id>``."""

    def __init__(self, cfg: EntraSourceConfig, session: requests.Session) -> None:
        self.cfg = cfg
        self.authority = f"{cfg.authority_host.rstrip('/')}/{cfg.tenant_id}"
        self.scopes = [f"{cfg.graph_url.rstrip('/')}/.default"]
        self._session = session
        self._app: Any = None
        self._lock = threading.Lock()
        self.acquired = 0
        """Tokens msal fetched from the token endpoint (cache hits not counted)."""

    def _application(self) -> Any:
        if self._app is None:
            try:
                self._app = msal.ConfidentialClientApplication(
                    self.cfg.client_id,
                    client_credential=client_credential(self.cfg),
                    authority=self.authority,
                    http_client=self._session,
                    timeout=self.cfg.timeout,
                    instance_discovery=False,
                )
            except ValueError as exc:
                raise SourceUnavailable(
                    f"source {self.cfg.name}: authority {self.authority} is not usable: {exc}"
                ) from exc
            except requests.RequestException as exc:
                raise SourceUnavailable(
                    f"source {self.cfg.name}: cannot reach authority {self.authority}: {exc}"
                ) from exc
        return self._app

    def token(self, *, force_refresh: bool = False) -> str:
        """A valid access token (from msal's cache unless expired or ``force_refresh``)."""
        with self._lock:
            app = self._application()
            if force_refresh:
                for account_token in list(app.token_cache.search(msal.TokenCache.CredentialType.ACCESS_TOKEN)):
                    app.token_cache.remove_at(account_token)
            try:
                result = app.acquire_token_for_client(scopes=self.scopes)
            except requests.RequestException as exc:
                raise SourceUnavailable(
                    f"source {self.cfg.name}: token request to {self.authority} failed: {exc}"
                ) from exc
            except ValueError as exc:
                raise SourceUnavailable(
                    f"source {self.cfg.name}: token request to {self.authority} failed: {exc}"
                ) from exc
        if "access_token" not in result:
            error = result.get("error", "unknown_error")
            description = str(result.get("error_description", "")).splitlines()
            raise SourceUnavailable(
                f"source {self.cfg.name}: token request to {self.authority} as client "
                f"{self.cfg.client_id} failed: {error}" + (f": {description[0]}" if description else "")
            )
        if result.get("token_source") == "identity_provider":
            self.acquired += 1
        return str(result["access_token"])
