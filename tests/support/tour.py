"""A tour of every page for every role in real Chromium, for the layout and axe tests.

`set_up` makes a teacher and an admin with the command line and a student through the
register page; the teacher makes a class on /classes with the student on its roster and a
channel; then the student and teacher get a 300-character unbroken display name and the
class a 300-character unbroken name straight in the database (longer than the forms allow: a
name imported or made before the limit must not break a page either). `tour` signs in as
each role and yields every page it can reach.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.support.client import PASSWORD
from tests.support.live import LIVE_SECRET, ROOT, LiveServer

VIEWPORTS = {"wide": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}
LONG_NAME = "W" * 300
# An agent no rule knows: the sessions page shows it raw, 300 characters with no space.
LONG_AGENT = "UnknownBrowser/" + "x" * 285
LONG_CLASS = "C" * 300
ROLES = ("signed-out", "student", "teacher", "admin")
SCREENSHOTS = ROOT / "test-screenshots"


def create_user(server: LiveServer, username: str, role: str) -> None:
    """`python run.py create-user` against the server's own database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLP_")}
    env.update(
        PLP_DATA_DIR=str(server.data_dir),
        PLP_PASSWORD=PASSWORD,
        PLP_BCRYPT_ROUNDS="4",
        SESSION_SECRET=LIVE_SECRET,
    )
    command = [sys.executable, str(ROOT / "run.py"), "create-user", "--username", username]
    subprocess.run([*command, "--role", role], env=env, check=True, timeout=60, cwd=str(ROOT))


def set_up(server: LiveServer, browser: Any) -> None:
    """Users for every role (one registered in the browser), all with a 300-character name."""
    create_user(server, "teach", "teacher")
    create_user(server, "boss", "admin")
    context = browser.new_context()
    page = context.new_page()
    page.goto(server.url + "/register")
    page.fill("#username", "kid")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(server.url + "/dashboard")
    context.close()
    make_class(server, browser)
    with sqlite3.connect(Path(server.data_dir) / "plp.sqlite3") as db:
        db.execute("UPDATE users SET display_name = ? WHERE role != 'admin'", (LONG_NAME,))
        db.execute("UPDATE classes SET name = ?", (LONG_CLASS,))


def make_class(server: LiveServer, browser: Any) -> None:
    """Class 1, by the teacher on /classes: the student on its roster, one channel."""
    context = browser.new_context()
    page = context.new_page()
    sign_in(page, server.url, "teach")
    page.goto(server.url + "/classes")
    page.fill("#create-name", "5A")
    page.click("button:text-is('Create class')")
    page.wait_for_url(server.url + "/classes/1")
    page.fill("#member-username", "kid")
    page.click("button:text-is('Add to class')")
    page.wait_for_selector("#roster tr[data-user='kid']")
    page.fill("#channel-name", "maths")
    page.click("button:text-is('Create channel')")
    page.wait_for_selector("#class-channels li")
    context.close()


def sign_in(page: Any, url: str, username: str) -> None:
    page.goto(url + "/login")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(url + "/dashboard")


USERNAMES = {"student": "kid", "teacher": "teach", "admin": "boss"}


def pages_for(role: str) -> list[tuple[str, str]]:
    """(name, path) of every page this role can see; /admin is the 403 page below admin."""
    if role == "signed-out":
        return [
            ("index", "/"),
            ("login", "/login"),
            ("register", "/register"),
            ("reset", "/reset"),
            ("404", "/nope"),
        ]
    pages = [
        ("index", "/"),
        ("dashboard", "/dashboard"),
        ("chat", "/chat"),
        ("sessions", "/sessions"),
        ("account", "/account"),
        ("classes", "/classes"),
        ("admin" if role == "admin" else "403", "/admin"),
    ]
    if role == "admin":
        pages.append(("disable-confirm", "/admin/users/1/disable"))
    if role in ("student", "teacher"):
        pages.append(("class", "/classes/1"))  # the student's view, or the teacher's
    if role == "student":
        pages.append(("leave-confirm", "/classes/1/leave"))
    if role == "teacher":
        pages.append(("delete-confirm", "/classes/1/delete"))
    return pages


def tour(
    browser: Any, server: LiveServer, viewport: str, *, dark: bool = False, zone: str = "UTC"
) -> Iterator[Any]:
    """(role, name, page) for every page of every role, loaded and settled."""
    for role in ROLES:
        context = browser.new_context(
            viewport=VIEWPORTS[viewport],
            user_agent=LONG_AGENT,
            color_scheme="dark" if dark else "light",
            timezone_id=zone,
            locale="en-GB",
        )
        page = context.new_page()
        if role != "signed-out":
            sign_in(page, server.url, USERNAMES[role])
        for name, path in pages_for(role):
            page.goto(server.url + path)
            page.wait_for_load_state("load")
            yield role, name, page
        yield from after_forms(role, page, server.url)
        context.close()


def after_forms(role: str, page: Any, url: str) -> Iterator[tuple[str, str, Any]]:
    """Pages that only a form post shows: /reset refused, and a reset code made on /admin."""
    if role == "signed-out":
        page.goto(url + "/reset")
        page.fill("#username", "kid")
        page.fill("#code", "ABCD-EFGH-JKMN")
        # Long enough for the browser's own checks; the server refuses the mismatch (400).
        page.fill("#newPassword", "a long enough passphrase")
        page.fill("#confirmPassword", "another long passphrase")
        page.click("button[type=submit]")
        page.wait_for_load_state("load")
        yield role, "reset-refused", page
    elif role == "admin":
        page.goto(url + "/admin")
        page.click("button[aria-label='Make reset code for kid']")
        page.wait_for_load_state("load")
        yield role, "reset-code", page


def overflow(page: Any) -> int:
    """How many pixels the page is wider than the window (0 when nothing scrolls sideways)."""
    return page.evaluate(
        "Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)"
        " - window.innerWidth"
    )
