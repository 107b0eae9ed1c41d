"""The reviewer web page driven in Debian's headless Chromium (Selenium + chromium-driver,
installed by scripts/install-deps), against a real slapd (StartTLS, real passwords) and
PostgreSQL with business roles the DBAs made and a hand grant (brownfield):
wrong password refused, sign-in, items grouped by person, a revoke needs a comment,
bulk keep, self-review refused, CSRF refused, idle timeout, delegation, sign-off by
the campaign owner freezing the decisions, every step in the verified audit chain,
and the revoke of rule-based access removed by the next ordinary apply.

Set REVIEW_SCREENSHOT=docs/images/review-page.png to refresh the screenshot in docs/reviews.md.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from provisioner.review.server import build_app, make_review_server
from provisioner.store.signing import verify_chain
from provisioner.store.state import StateStore
from tests.support import pg
from tests.support.e2e import RELAXED_SAFETY, make_setup, memberships, person
from tests.support.fixtures import LdapOu

RULES = """
[[rule]]
id = "desk-traders"
description = "traders execute"
grant = ["{p}trade_executor", "{p}trade_reader"]
when.all = [ {{ attr = "department", equals = "Trading" }}, {{ attr = "title", regex = "[Tt]rader" }} ]

[[rule]]
id = "approvers"
description = "approvers approve"
grant = ["{p}trade_approver"]
when = {{ group = "approvers" }}
"""

CATALOG = """
[role."{p}trade_approver"]
description = "Approve trades."
owner = "carol"
sensitivity = "critical"

[role."{p}trade_executor"]
description = "Enter orders."
owner = "head-of-trading"
sensitivity = "high"

[role."{p}trade_reader"]
description = "Read the blotter."
owner = "head-of-trading"
sensitivity = "low"
"""

SOD = """
[[policy]]
id = "trade-approve-execute"
description = "No user may both approve and execute trades."
conflicts = [ {{ role = "{p}trade_approver" }}, {{ role = "{p}trade_executor" }} ]
"""

CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    exe = str(Path(sys.executable).with_name("provisioner"))
    return subprocess.run([exe, *args], capture_output=True, text=True, env={**os.environ, "NO_COLOR": "1"},
                          timeout=180, check=False)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    assert Path(CHROMIUM).exists() and Path(DRIVER).exists(), "run scripts/install-deps (chromium, chromium-driver)"
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--window-size=1400,1000", f"--user-data-dir={tmp_path / 'chrome'}"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(options=opts, service=Service(DRIVER))
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


class Clock:
    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset


def navigating(b: webdriver.Chrome, act: Callable[[], object]) -> None:
    """Run ``act`` (a click or a script submitting a form) and wait for the next page."""
    marker = b.execute_script("return window.__page = Math.random();")
    act()

    def loaded(d: Any) -> bool:
        try:  # a new document has no marker and is fully parsed
            return bool(d.execute_script("return window.__page === undefined && document.readyState === 'complete';"))
        except WebDriverException:  # between documents
            return False

    WebDriverWait(b, 30).until(loaded)
    assert marker is not None


def click(b: webdriver.Chrome, element: Any) -> None:
    navigating(b, element.click)


def sign_in(b: webdriver.Chrome, base: str, user: str, password: str) -> None:
    b.get(base + "/login")
    b.find_element(By.ID, "username").send_keys(user)
    b.find_element(By.ID, "password").send_keys(password)
    click(b, b.find_element(By.ID, "sign-in"))


def row(b: webdriver.Chrome, identity: str, access: str) -> Any:
    for tr in b.find_elements(By.CSS_SELECTOR, "tr[id^=item-]"):
        if f"login {identity}" in tr.text and access in tr.text.split("\n")[0] + tr.text:
            cells = tr.find_elements(By.TAG_NAME, "td")
            if cells[1].text.split("\n")[0] == access:
                return tr
    raise AssertionError(f"no row for {identity} / {access} in {b.page_source[:3000]}")


def flash(b: webdriver.Chrome) -> str:
    return " ".join(m.text for m in b.find_elements(By.CSS_SELECTOR, ".msg"))


def test_review_page_in_chromium(tmp_path: Path, ldap_ou: LdapOu, role_prefix: str,
                                 browser: webdriver.Chrome) -> None:
    p, b = role_prefix, browser
    with pg.admin_connect() as conn:  # brownfield: the DBAs made the business roles
        for r in ("trade_executor", "trade_reader", "trade_approver"):
            conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(p + r)))
    carol = ldap_ou.add_user("carol", userPassword="carol-Pa55", **person("Trading", "Head of Desk"))
    ldap_ou.add_user("alice", userPassword="alice-Pa55", **person("Trading", "Equity Trader", manager=carol))
    ldap_ou.add_user("olivia", userPassword="olivia-Pa55", **person("Compliance", "Chief Compliance Officer"))
    ldap_ou.add_user("dan", userPassword="dan-Pa55", **person("Trading", "Deputy Head"))
    ldap_ou.add_group("approvers", [carol])
    ca = ldap_ou.server.dir / "ca.pem"
    source = ldap_ou.config(name=f"{p}src", start_tls=True, ca_file=str(ca))
    extra = RELAXED_SAFETY + '\n[review]\nowners = ["olivia"]\nsecure_cookies = false\nidle_timeout = 600\n'
    setup = make_setup(tmp_path, source, p, rules=RULES, extra=extra)
    maps = tmp_path / "mappings"
    for folder, text in (("roles", CATALOG), ("sod", SOD)):
        (maps / folder).mkdir()
        (maps / folder / "x.toml").write_text(text.format(p=p))
    setup.apply()
    with pg.admin_connect() as conn:  # a hand grant: alice approves too (SoD conflict)
        conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(f"{p}trade_approver"),
                                                      sql.Identifier(f"{p}alice")))
    cfg_path = str(setup.path)
    done = run("review", "start", "-c", cfg_path, "--campaign", "2026-Q4")
    assert done.returncode == 0, done.stderr

    cfg = setup.config()
    store = StateStore(cfg.state.url, base_dir=cfg.base_dir)
    clock = Clock()
    server = make_review_server(build_app(cfg, store, clock), "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        # an unauthenticated page sends you to sign in; a wrong password is refused
        b.get(base + "/campaign/2026-Q4")
        assert b.current_url.endswith("/login")
        sign_in(b, base, "carol", "wrong-password")
        assert b.current_url.endswith("/login") and "Sign-in refused" in flash(b)
        sign_in(b, base, "nobody", "x")
        assert "Sign-in refused" in flash(b)

        sign_in(b, base, "carol", "carol-Pa55")
        assert not b.find_elements(By.CSS_SELECTOR, ".msg.error"), flash(b)
        assert b.find_element(By.ID, "who").text == "carol"
        click(b, b.find_element(By.LINK_TEXT, "2026-Q4"))
        assert "0 of 4 decided" in b.find_element(By.ID, "progress").text
        people = [h.text.split(" (")[0] for h in b.find_elements(By.TAG_NAME, "h2")][:2]
        assert people == ["alice", "carol"], "items grouped by person"
        approver = row(b, f"{p}alice", f"{p}trade_approver")
        assert "hand grant" in approver.text and "trade-approve-execute" in approver.text
        assert "critical" in approver.text
        executor = row(b, f"{p}alice", f"{p}trade_executor")
        assert "rule desk-traders" in executor.text and "title=Equity Trader" in executor.text

        # revoke without a comment is refused; with one it is recorded
        click(b, executor.find_element(By.CSS_SELECTOR, "button[value=revoke]"))
        assert "needs a comment" in flash(b)
        executor = row(b, f"{p}alice", f"{p}trade_executor")
        executor.find_element(By.NAME, "comment").send_keys("moved to research; no order entry")
        click(b, executor.find_element(By.CSS_SELECTOR, "button[value=revoke]"))
        assert "Decision recorded" in flash(b)
        assert "revoke" in row(b, f"{p}alice", f"{p}trade_executor").text
        approver = row(b, f"{p}alice", f"{p}trade_approver")
        approver.find_element(By.NAME, "comment").send_keys("approves out of band")
        click(b, approver.find_element(By.CSS_SELECTOR, "button[value=revoke]"))
        click(b, b.find_element(By.ID, "bulk-keep"))
        assert "1 low-sensitivity item(s) kept" in flash(b)
        assert "3 of 4 decided" in b.find_element(By.ID, "progress").text
        shot = Path(os.environ.get("REVIEW_SCREENSHOT") or tmp_path / "review-page.png")
        shot.parent.mkdir(parents=True, exist_ok=True)
        assert b.save_screenshot(str(shot)) and shot.stat().st_size > 10_000

        # self-review: carol's own approver item is assigned to her (role owner); the button is
        # disabled and a forged submission is refused by the server
        own = row(b, f"{p}carol", f"{p}trade_approver")
        assert "self-review refused" in own.text
        button = own.find_element(By.CSS_SELECTOR, "button[value=keep]")
        navigating(b, lambda: b.execute_script("arguments[0].disabled = false; arguments[0].click();", button))
        assert "self-review refused" in flash(b) and "3 of 4 decided" in b.find_element(By.ID, "progress").text

        # CSRF: a form with a wrong token, and a cross-site POST without one, are refused
        form_item = row(b, f"{p}alice", f"{p}trade_reader")
        token = form_item.find_element(By.NAME, "csrf")
        navigating(b, lambda: b.execute_script("arguments[0].value = 'forged'; arguments[0].form.submit();", token))
        assert "CSRF" in b.page_source and "Refused" in b.title
        cookie = b.get_cookie("provisioner_review")
        assert cookie and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        req = urllib.request.Request(base + "/campaign/2026-Q4/bulk-keep", data=b"x=1", method="POST",
                                     headers={"Cookie": f"provisioner_review={cookie['value']}",
                                              "Origin": "https://evil.example"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(req, timeout=10)
        assert refused.value.code == 403

        # delegation: carol hands her items to dan, who decides her own item
        b.get(base + "/campaign/2026-Q4")
        b.find_element(By.ID, "delegate-to").send_keys("dan")
        b.find_element(By.ID, "delegate-comment").send_keys("my own approver access")
        click(b, b.find_element(By.ID, "delegate"))
        assert "delegated to dan" in flash(b)
        click(b, b.find_element(By.ID, "sign-out"))
        assert b.current_url.endswith("/login")

        # idle timeout: dan's session ends after [review] idle_timeout without a request
        sign_in(b, base, "dan", "dan-Pa55")
        clock.offset = timedelta(seconds=601)
        b.get(base + "/campaign/2026-Q4")
        assert b.current_url.endswith("/login") and "without activity" in flash(b)
        clock.offset = timedelta(seconds=602)
        sign_in(b, base, "dan", "dan-Pa55")
        b.get(base + "/campaign/2026-Q4")
        assert "3 of 4 decided" in b.find_element(By.ID, "progress").text
        own = row(b, f"{p}carol", f"{p}trade_approver")
        own.find_element(By.NAME, "comment").send_keys("carol approves for the desk")
        click(b, own.find_element(By.CSS_SELECTOR, "button[value=keep]"))
        assert "4 of 4 decided" in b.find_element(By.ID, "progress").text
        click(b, b.find_element(By.ID, "sign-out"))

        # sign-off by the campaign owner (a reviewer cannot); decisions frozen after
        sign_in(b, base, "olivia", "olivia-Pa55")
        b.get(base + "/campaign/2026-Q4")
        assert "carol" in b.find_element(By.ID, "coverage").text
        b.find_element(By.ID, "signoff-comment").send_keys("Q4 review complete; revocations to apply")
        click(b, b.find_element(By.ID, "signoff"))
        assert "signed off by olivia" in b.find_element(By.ID, "state").text
        assert not b.find_elements(By.ID, "signoff")
    finally:
        server.shutdown()
        server.server_close()
        store.close()

    # after sign-off a worksheet can no longer change a decision
    out = tmp_path / "sheets"
    assert run("review", "export", "-c", cfg_path, "--campaign", "2026-Q4", "--out", str(out)).returncode == 0
    sheet = next(out.glob("*carol.csv"))
    late = run("review", "import", "-c", cfg_path, str(sheet))
    assert late.returncode != 0 and "signed off" in late.stderr

    # the ordinary apply removes the rule-based revoke (exclusion); the hand grant by review apply
    setup.apply()
    assert f"{p}trade_executor" not in memberships(p)[f"{p}alice"]
    done = run("review", "apply", "-c", cfg_path, "--campaign", "2026-Q4")
    assert done.returncode == 0, done.stderr
    assert memberships(p)[f"{p}alice"] == {f"{p}trade_reader"}

    store = StateStore(cfg.state.url, base_dir=cfg.base_dir)
    try:
        rows = [r.content for r in store.iter_audit()]
        report = verify_chain(store.audit, [], None)
    finally:
        store.close()
    assert report.ok, report.problem
    review = [r for r in rows if r["kind"] == "review"]
    decisions = [r["after"] for r in review if "decision" in (r.get("after") or {})]
    assert sorted((d["reviewer"], d["decision"]) for d in decisions) == [
        ("carol", "keep"), ("carol", "revoke"), ("carol", "revoke"), ("dan", "keep")]
    assert all(r["actor"].endswith("(review web)") for r in review if "decision" in (r.get("after") or {}))
    assert any((r.get("after") or {}).get("delegation", {}).get("to") == "dan" for r in review)
    signoff = [r["after"]["signoff"] for r in review if "signoff" in (r.get("after") or {})]
    assert signoff and signoff[0]["signed_off_by"] == "olivia" and signoff[0]["revoke"] == 2
