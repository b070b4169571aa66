"""A person confirms a subscription in a real, headless chromium driven by Playwright."""

from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.conftest import Project, Receiver
from tests.test_api import ADMIN, api, call, mailed_token, mails_to, members, new_list

__all__ = ["api"]  # the fixture, imported for use here

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).parent / "artifacts"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

playwright_api = pytest.importorskip("playwright.sync_api")
if not CHROMIUM.exists() and shutil.which("chromium") is None:
    pytest.skip("chromium is not installed; `make test` installs it", allow_module_level=True)


def test_subscription_confirmed_by_clicking_the_mailed_link(
    api: Receiver, project: Project
) -> None:
    """Opening the mailed link shows a button; only clicking it subscribes the address."""
    new_list(api.url, project)
    assert (
        call(api.url, "POST", "/lists/club/subscriptions", {"address": "zoe@example.net"}).status
        == 202
    )
    link, _ = mailed_token(mails_to(project.data_dir, "zoe@example.net")[-1])
    parts = urlsplit(link)
    page_url = f"{api.url}{parts.path}?{parts.query}"  # the site's base_url is served here

    with playwright_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True)
            page.goto(page_url)
            button = page.get_by_role("button", name="Confirm subscription")
            assert "Subscribe zoe@example.net to the list club?" in page.content()
            assert members(project, "club") == [ADMIN]  # showing the page changed nothing
            button.click()
            page.wait_for_load_state()
            assert "zoe@example.net is now subscribed to club." in page.inner_text("main")
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "subscription-confirmed.png"), full_page=True)
        finally:
            browser.close()
    assert members(project, "club") == [ADMIN, "zoe@example.net"]
    assert (ARTIFACTS / "subscription-confirmed.png").stat().st_size > 1000


def test_account_verified_with_a_password_typed_in_the_browser(
    api: Receiver, project: Project
) -> None:
    """The mailed verification link asks for the password; the one typed there, and no
    other, opens the account."""
    assert call(api.url, "POST", "/accounts", {"email": ADMIN}).status == 202
    link, _ = mailed_token(mails_to(project.data_dir, ADMIN)[-1])
    parts = urlsplit(link)
    with playwright_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True)
            page.goto(f"{api.url}{parts.path}?{parts.query}")
            page.get_by_label("New password").fill("typed in the browser")
            page.get_by_role("button", name="Verify account").click()
            page.wait_for_load_state()
            assert f"The account {ADMIN} is verified." in page.inner_text("main")
        finally:
            browser.close()
    assert (
        call(api.url, "POST", "/lists", {"name": "club"}, (ADMIN, "typed in the browser")).status
        == 201
    )
