"""The dashboard as a person opens it, for the browser tests: a new page whose requests may go to the admin app
only (anything else is aborted and listed in ``outside``), signed in on the form with the admin token, the way the
URL ``axis up`` prints is used."""

from __future__ import annotations

from typing import Any


def signed_in(browser: Any, admin: str, token: str, *, height: int = 1200, **context: Any) -> tuple[Any, list[str]]:
    """(page, outside): the dashboard at ``admin``, signed in; ``outside`` collects every request that tried to
    leave the admin app (a test asserts it stays empty: no CDN, no tracker)."""
    page = browser.new_context(viewport={"width": 1400, "height": height}, **context).new_page()
    outside: list[str] = []

    def guard(route: Any) -> None:
        if route.request.url.startswith(admin):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", guard)
    page.goto(f"{admin}/")
    page.fill("input[name=token]", token)
    page.click("button[type=submit]")
    page.wait_for_url(f"{admin}/")
    return page, outside
