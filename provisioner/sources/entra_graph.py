"""A small Microsoft Graph client: bearer tokens from msal, ``@odata.nextLink``
paging, throttling (429 + Retry-After) and 5xx retries with capped exponential
backoff and jitter.  A page that still fails after ``max_retries`` raises
:class:`SourceUnavailable`, so the caller never sees part of a collection."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

import requests
import structlog

from provisioner.config import EntraSourceConfig
from provisioner.errors import SourceIncomplete, SourceUnavailable
from provisioner.sources.entra_auth import TokenProvider

log = structlog.get_logger(__name__)

RETRY_STATUS = frozenset({500, 502, 503, 504})
DELTA_EXPIRED_CODES = frozenset({"syncstatenotfound", "resyncrequired", "syncstateinvalid"})


class DeltaExpired(Exception):
    """Graph no longer accepts the stored delta link: a full resync is needed."""


def graph_error(response: requests.Response) -> tuple[str, str]:
    """(code, readable message) from a Graph error body
    ``{"error": {"code", "message", "innerError": {"request-id", "date"}}}``."""
    try:
        body = response.json()
    except ValueError:
        body = None
    err = body.get("error") if isinstance(body, dict) else None
    if not isinstance(err, dict):
        text = (response.text or "").strip().replace("\n", " ")[:200]
        return "", f"HTTP {response.status_code} {response.reason or ''}".rstrip() + (f": {text}" if text else "")
    code = str(err.get("code") or "")
    inner = err.get("innerError") or err.get("innererror") or {}
    message = f"HTTP {response.status_code} {code}: {err.get('message') or 'no message'}"
    if isinstance(inner, dict):
        ids = [f"{k} {inner[k]}" for k in ("request-id", "date") if inner.get(k)]
        if ids:
            message += f" ({', '.join(ids)})"
    return code, message


@dataclass
class GraphStats:
    requests: int = 0
    retries: int = 0
    throttled: int = 0
    waited: float = 0.0
    pages: int = 0
    extra: dict[str, int] = field(default_factory=dict)


class GraphClient:
    def __init__(
        self,
        cfg: EntraSourceConfig,
        tokens: TokenProvider,
        session: requests.Session,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.cfg = cfg
        self.base = cfg.graph_url.rstrip("/") + "/v1.0"
        self.tokens = tokens
        self.session = session
        self.sleep = sleep
        self.stats = GraphStats()

    def url(self, path: str, params: Mapping[str, str] | None = None) -> str:
        query = urlencode(params or {}, quote_via=quote, safe="$,()=/'")
        return f"{self.base}{path}" + (f"?{query}" if query else "")

    # ------------------------------------------------------------------ one request

    def _backoff(self, attempt: int) -> float:
        cap = min(self.cfg.backoff_max, self.cfg.backoff_base * (2**attempt))
        return random.uniform(cap / 2, cap) if cap > 0 else 0.0  # noqa: S311 - jitter, not crypto

    def _retry_after(self, response: requests.Response, attempt: int) -> float:
        raw = response.headers.get("Retry-After", "")
        try:
            wait = float(raw)
        except ValueError:
            wait = self._backoff(attempt)
        return max(0.0, min(wait, self.cfg.max_retry_after))

    def get(self, url: str, headers: Mapping[str, str] | None = None) -> dict[str, Any]:
        """GET one Graph URL; retried on 429/5xx/network errors, then SourceUnavailable."""
        refreshed = False
        last = ""
        for attempt in range(self.cfg.max_retries + 1):
            token = self.tokens.token()
            hdrs = {"Authorization": f"Bearer {token}", "Accept": "application/json", **(headers or {})}
            self.stats.requests += 1
            try:
                response = self.session.get(url, headers=hdrs, timeout=self.cfg.timeout)
            except requests.RequestException as exc:
                last = f"{type(exc).__name__}: {exc}"
                wait = self._backoff(attempt)
            else:
                if response.status_code == 200:
                    try:
                        body = response.json()
                    except ValueError as exc:
                        raise SourceUnavailable(f"{_short(url)}: Graph returned invalid JSON: {exc}") from exc
                    if not isinstance(body, dict):
                        raise SourceUnavailable(f"{_short(url)}: Graph returned {type(body).__name__}, not an object")
                    return body
                code, message = graph_error(response)
                if response.status_code == 410 or (
                    response.status_code == 400 and code.lower() in DELTA_EXPIRED_CODES
                ):
                    raise DeltaExpired(message)
                if response.status_code == 401 and not refreshed:
                    refreshed = True
                    self.tokens.token(force_refresh=True)
                    continue
                if response.status_code == 429:
                    self.stats.throttled += 1
                    wait = self._retry_after(response, attempt)
                elif response.status_code in RETRY_STATUS:
                    wait = (
                        self._retry_after(response, attempt)
                        if "Retry-After" in response.headers
                        else self._backoff(attempt)
                    )
                elif response.status_code == 401:
                    raise SourceUnavailable(f"{self.cfg.name}: Graph refused the token: {message}")
                else:
                    raise SourceIncomplete(
                        f"source {self.cfg.name}: Graph request {_short(url)} failed: {message}; "
                        "nothing read from this source is used"
                    )
                last = message
            if attempt == self.cfg.max_retries:
                break
            self.stats.retries += 1
            self.stats.waited += wait
            log.warning("graph_retry", source=self.cfg.name, url=_short(url), attempt=attempt + 1, wait=wait, why=last)
            self.sleep(wait)
        raise SourceUnavailable(
            f"source {self.cfg.name}: Graph request {_short(url)} still failing after "
            f"{self.cfg.max_retries} retr{'y' if self.cfg.max_retries == 1 else 'ies'}: {last}; "
            "nothing read from this source is used"
        )

    # ------------------------------------------------------------------ collections

    def pages(self, url: str, headers: Mapping[str, str] | None = None) -> Iterator[dict[str, Any]]:
        """Every page of a collection, following ``@odata.nextLink``; the last page
        carries ``@odata.deltaLink`` for delta queries."""
        seen: set[str] = set()
        next_url: str | None = url
        while next_url:
            if next_url in seen:
                raise SourceIncomplete(f"source {self.cfg.name}: Graph repeated a nextLink ({_short(next_url)})")
            seen.add(next_url)
            page = self.get(next_url, headers)
            self.stats.pages += 1
            if not isinstance(page.get("value", []), list):
                raise SourceIncomplete(f"source {self.cfg.name}: {_short(next_url)}: 'value' is not a list")
            yield page
            link = page.get("@odata.nextLink")
            next_url = str(link) if link else None

    def collect(self, url: str, headers: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
        return [item for page in self.pages(url, headers) for item in page.get("value", [])]


def _short(url: str) -> str:
    """The URL without its query (delta and skip tokens are long and opaque)."""
    return url.split("?", 1)[0]
