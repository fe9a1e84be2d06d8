"""The chat page in real Chromium at 1280×800 and 390×844 against a real `python run.py`:
the page fills the window without scrolling (messages scroll inside their pane), nothing
overflows sideways, long words wrap, line breaks stay, the channel drawer on a phone, unread
counts in the channel list and the tab title, channel create/delete in the UI, and the
reconnecting banner when the server stops. Console errors fail every test."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support import PageProblems
from tests.support.live import ROOT

pytestmark = pytest.mark.browser

TIMEOUT = 15_000  # ms; bounds a hang only
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
PASSPHRASE = "a long enough passphrase"


def register(context, server, username: str, problems: PageProblems):
    page = problems.watch(context.new_page())
    page.set_default_timeout(TIMEOUT)
    page.goto(server.url + "/register")
    page.fill("input[name=username]", username)
    page.fill("input[name=displayName]", username.title())
    page.fill("input[name=password]", PASSPHRASE)
    page.click("button[type=submit]")
    page.wait_for_url(server.url + "/dashboard")
    return page


def sign_in(context, server, username: str, problems: PageProblems):
    page = problems.watch(context.new_page())
    page.set_default_timeout(TIMEOUT)
    page.goto(server.url + "/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSPHRASE)
    page.click("button[type=submit]")
    page.wait_for_url(server.url + "/dashboard")
    return page


def create_teacher(server, username: str, role: str = "teacher") -> None:
    """The CLI writes the account into the running server's database."""
    env = {
        "PLP_DATA_DIR": str(server.data_dir),
        "PLP_PASSWORD": PASSPHRASE,
        "PLP_BCRYPT_ROUNDS": "4",
        "PATH": "/usr/bin:/bin",
    }
    argv = [sys.executable, str(ROOT / "run.py"), "create-user", "--username", username]
    result = subprocess.run(
        [*argv, "--role", role],
        cwd=str(ROOT),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def open_chat(page, server, hash_: str = "") -> None:
    page.goto(server.url + "/chat" + hash_)
    page.wait_for_selector("#channels button[aria-current=true]", state="attached")
    page.wait_for_selector("textarea[name=message]:not([disabled])")


def post(page, text: str) -> None:
    """Type `text` (newlines as Shift+Enter) and send it; wait for the stored copy."""
    before = page.locator("#messages li[data-id]").count()
    page.fill("textarea[name=message]", text)
    page.press("textarea[name=message]", "Enter")
    page.wait_for_function(
        "n => document.querySelectorAll('#messages li[data-id]').length > n", arg=before
    )


def no_sideways_scroll(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def page_does_not_scroll(page) -> bool:
    return page.evaluate("document.documentElement.scrollHeight <= window.innerHeight")


def in_viewport(page, selector: str) -> bool:
    box = page.locator(selector).bounding_box()
    size = page.viewport_size
    return (
        box is not None
        and box["y"] >= 0
        and box["x"] >= 0
        and box["y"] + box["height"] <= size["height"]
        and box["x"] + box["width"] <= size["width"]
    )


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_the_page_fills_the_window_and_never_overflows(browser, live_server, viewport):
    server = live_server()
    problems = PageProblems()
    context = browser.new_context(viewport=viewport)
    amy = register(context, server, "amy", problems)
    open_chat(amy, server)

    # An empty channel says so, and "Load older" is really hidden.
    amy.wait_for_selector("#empty:text('No messages yet')")
    assert not amy.locator("#older").is_visible()
    assert amy.locator("#messages").get_attribute("role") == "log"
    assert amy.locator("label[for=message]").is_visible()
    assert in_viewport(amy, "textarea[name=message]")
    assert no_sideways_scroll(amy) and page_does_not_scroll(amy)

    word = "w" * 300
    post(amy, word)
    post(amy, "first line\nsecond line")
    post(amy, "\n".join(f"line {i}" for i in range(60)))  # taller than any pane
    assert amy.locator("#empty").is_hidden()
    assert not amy.locator("#older").is_visible()  # three messages: nothing older

    # The 300-character word wraps inside the pane; nothing scrolls sideways.
    sizes = amy.evaluate(
        """w => {
            const el = [...document.querySelectorAll('#messages .text')]
                .find(e => e.textContent === w);
            return {text: el.getBoundingClientRect().width, inner: el.scrollWidth,
                    own: el.clientWidth, pane: document.getElementById('messages').clientWidth,
                    height: el.getBoundingClientRect().height};
        }""",
        word,
    )
    assert sizes["text"] <= sizes["pane"] and sizes["inner"] <= sizes["own"], sizes
    assert sizes["height"] > 30, sizes  # more than one line: it wrapped
    assert no_sideways_scroll(amy)

    # The two-line message shows as two lines.
    lines = amy.evaluate(
        """() => {
            const el = [...document.querySelectorAll('#messages .text')]
                .find(e => e.textContent.startsWith('first line'));
            const lineHeight = parseFloat(getComputedStyle(el).lineHeight);
            return {text: el.innerText, lines: el.getBoundingClientRect().height / lineHeight};
        }"""
    )
    assert lines["text"] == "first line\nsecond line"
    assert 1.5 < lines["lines"] < 2.5, lines

    # History scrolls inside its pane; the page itself does not, and the box stays on screen.
    assert amy.evaluate(
        "(m => m.scrollHeight > m.clientHeight)(document.getElementById('messages'))"
    )
    assert page_does_not_scroll(amy) and no_sideways_scroll(amy)
    assert in_viewport(amy, "textarea[name=message]")
    assert in_viewport(amy, "#send")
    # Sticky to the newest message: the last one is in view.
    assert amy.evaluate(
        """() => { const m = document.getElementById('messages');
                   return m.scrollHeight - m.scrollTop - m.clientHeight < 40; }"""
    )
    # Date separator and local time.
    assert amy.locator("#messages li.day").first.inner_text() == "Today"
    context.close()
    assert problems.items == []


def test_channel_drawer_on_a_phone(browser, live_server):
    server = live_server()
    # School-wide channels are the admins' (SPEC §12): tess makes one from the drawer.
    create_teacher(server, "tess", "admin")
    problems = PageProblems()
    context = browser.new_context(viewport=PHONE)
    tess = sign_in(context, server, "tess", problems)
    open_chat(tess, server)
    toggle = tess.locator("#channels-toggle")
    assert toggle.get_attribute("aria-controls") == "channel-drawer"
    assert toggle.get_attribute("aria-expanded") == "false"
    assert not tess.locator("#channels").is_visible()
    toggle.click()
    tess.wait_for_selector("#channels", state="visible")
    assert toggle.get_attribute("aria-expanded") == "true"
    assert no_sideways_scroll(tess)

    # An admin creates a channel from the drawer; it opens; the drawer stays usable.
    tess.click("#new-channel-box summary")
    tess.fill("#new-channel-name", "maths")
    tess.fill("#new-channel-description", "Homework questions")
    tess.click("#new-channel button[type=submit]")
    tess.wait_for_selector("#channel-title:text-is('#maths')")
    tess.wait_for_selector("textarea[name=message]:not([disabled])")

    # While open, the drawer keeps the keyboard: Tab and Shift+Tab cycle inside it.
    if not tess.locator("#channels").is_visible():
        toggle.click()
    inside = "() => document.getElementById('channel-drawer').contains(document.activeElement)"
    count = tess.evaluate(
        """() => [...document.querySelectorAll('#channel-drawer a[href], #channel-drawer button,'
              + ' #channel-drawer input, #channel-drawer textarea, #channel-drawer summary')]
              .filter((el) => el.getClientRects().length > 0 && !el.disabled).length"""
    )
    tess.focus("#channels-close")
    for _ in range(count + 2):
        tess.keyboard.press("Tab")
        assert tess.evaluate(inside)
    tess.focus("#channels-close")  # the first focusable in the drawer
    tess.keyboard.press("Shift+Tab")
    assert tess.evaluate(inside)
    assert tess.evaluate("() => document.activeElement.id") != "channels-close"

    # Picking a channel closes the drawer.
    tess.click("#channels button[data-channel]:has-text('#general')")
    tess.wait_for_selector("#channels", state="hidden")
    assert toggle.get_attribute("aria-expanded") == "false"
    assert tess.inner_text("#channel-title") == "#general"
    assert in_viewport(tess, "textarea[name=message]")
    context.close()
    assert problems.items == []


def test_unread_counts_new_messages_button_and_channel_delete(browser, live_server):
    server = live_server()
    create_teacher(server, "tess", "admin")  # school-wide channels are the admins' (SPEC §12)
    problems = PageProblems()
    tess_context = browser.new_context(viewport=DESKTOP)
    amy_context = browser.new_context(viewport=DESKTOP)
    tess = sign_in(tess_context, server, "tess", problems)
    amy = register(amy_context, server, "amy", problems)

    open_chat(tess, server)
    tess.click("#new-channel-box summary")
    tess.fill("#new-channel-name", "maths")
    tess.select_option("#new-channel-kind", "announcement")
    tess.click("#new-channel button[type=submit]")
    tess.wait_for_selector("#channel-title:text-is('#maths')")
    tess.wait_for_selector("textarea[name=message]:not([disabled])")
    assert tess.locator("#delete-channel").is_visible()  # she made it

    open_chat(amy, server)  # on #general
    assert amy.locator("#new-channel-box").is_hidden()  # students do not create
    assert amy.locator("#delete-channel").is_hidden()
    amy.wait_for_selector("#channels button:has-text('#maths')")
    assert amy.title() == "Chat · plp"

    # A message in a channel amy is not viewing: a badge there and a count in the title.
    tess.wait_for_selector("#presence li:text-is('Amy')")  # amy joined #maths too
    post(tess, "Test on Friday")
    amy.wait_for_selector("#channels button:has-text('#maths') .badge")
    assert amy.inner_text("#channels button:has-text('#maths') .badge").startswith("1")
    amy.wait_for_function("() => document.title === '(1) Chat · plp'")
    assert amy.locator("#channels button[aria-current=true] .badge").count() == 0

    # Viewing the channel clears both; an announcement channel is read-only for amy.
    amy.click("#channels button:has-text('#maths')")
    amy.wait_for_selector("#messages .text:text-is('Test on Friday')")
    assert amy.locator("#channels .badge").count() == 0
    assert amy.title() == "Chat · plp"
    assert amy.locator("textarea[name=message]").is_disabled()

    # Scrolled up in a full pane, a new message shows "1 new message", which jumps down.
    amy.click("#channels button:has-text('#general')")
    tess.click("#channels button:has-text('#general')")
    tess.wait_for_selector("textarea[name=message]:not([disabled])")
    post(tess, "\n".join(f"line {i}" for i in range(60)))
    amy.wait_for_selector("#messages .text:has-text('line 59')")
    amy.evaluate("document.getElementById('messages').scrollTop = 0")
    post(tess, "Anyone there?")
    amy.wait_for_selector("#jump:text('1 new message')")
    amy.click("#jump")
    amy.wait_for_selector("#jump", state="hidden")
    assert amy.evaluate(
        """() => { const m = document.getElementById('messages');
                   return m.scrollHeight - m.scrollTop - m.clientHeight < 40; }"""
    )

    # Tess deletes #maths in the UI; it leaves amy's list through `channel_deleted`.
    tess.click("#channels button:has-text('#maths')")
    tess.once("dialog", lambda dialog: dialog.accept())
    tess.click("#delete-channel")
    tess.wait_for_selector("#channels button:has-text('#maths')", state="detached")
    amy.wait_for_selector("#channels button:has-text('#maths')", state="detached")
    tess_context.close()
    amy_context.close()
    assert problems.items == []


def test_reconnecting_banner_when_the_server_stops(browser, live_server):
    """The server stops: a role=status banner says so, Online empties and greys, the box is
    disabled; the server comes back: the page reconnects and all of that is undone."""
    server = live_server()
    problems = PageProblems()
    amy_context = browser.new_context(viewport=PHONE)
    ben_context = browser.new_context(viewport=PHONE)
    amy = register(amy_context, server, "amy", problems)
    ben = register(ben_context, server, "ben", problems)
    open_chat(amy, server)
    open_chat(ben, server)
    amy.wait_for_selector("#presence li:text-is('Ben')", state="attached")
    assert amy.locator("#status.banner").count() == 0
    ben_context.close()
    assert problems.items == []  # failed connections below log errors by design

    server.stop()
    banner = amy.locator("#status.banner")
    banner.wait_for()
    assert banner.get_attribute("role") == "status"
    assert "reconnecting" in banner.inner_text()
    assert amy.locator("#chat.offline").count() == 1
    assert amy.locator("#presence li").count() == 0  # no stale names
    assert amy.locator("textarea[name=message]").is_disabled()

    # Back up (same port, data and session snapshot): the banner goes, the box works again.
    server.start()
    amy.wait_for_selector("textarea[name=message]:not([disabled])")
    assert amy.locator("#status.banner").count() == 0
    assert amy.locator("#chat.offline").count() == 0
    amy.wait_for_selector("#presence li:text-is('Amy')", state="attached")
    amy_context.close()


def test_delete_own_message_disappears_for_everyone(browser, live_server):
    """Delete shows on one's own messages only; confirming calls the real
    DELETE /api/channels/{id}/messages/{messageId}, and the server's `message_deleted` frame
    removes the message from the author's screen and from the other reader's, for good."""
    server = live_server()
    problems = PageProblems()
    amy_context = browser.new_context(viewport=DESKTOP)
    ben_context = browser.new_context(viewport=DESKTOP)
    amy = register(amy_context, server, "amy", problems)
    ben = register(ben_context, server, "ben", problems)
    open_chat(amy, server)
    open_chat(ben, server)
    post(amy, "from amy")
    post(ben, "from ben, first")
    post(ben, "from ben, second")
    for page in (amy, ben):
        page.wait_for_selector("#messages li[data-id]:has-text('from ben, second')")
    theirs = ben.locator("#messages li[data-id]:has-text('from amy')")
    first = ben.locator("#messages li[data-id]:has-text('from ben, first')")
    assert theirs.locator("button.delete").count() == 0
    assert first.locator("button.delete").count() == 1

    first_id = first.get_attribute("data-id")
    ben.once("dialog", lambda dialog: dialog.accept())
    first.hover()
    first.locator("button.delete").click()
    first.wait_for(state="detached")
    # The other reader's screen loses it through the server's frame, without a reload.
    amy.wait_for_selector(f"#messages li[data-id='{first_id}']", state="detached")
    assert amy.locator("#messages li[data-id] .text").all_text_contents() == [
        "from amy",
        "from ben, second",
    ]
    # Gone from history too: a fresh page does not bring it back.
    ben.reload()
    ben.wait_for_selector("#messages li[data-id]:has-text('from ben, second')")
    assert ben.locator(f"#messages li[data-id='{first_id}']").count() == 0
    amy_context.close()
    ben_context.close()
    assert problems.items == []


def test_older_history_day_separators_and_grouping(browser, live_server):
    """Sixty stored messages (thirty yesterday, thirty today; written straight into the
    server's SQLite file, as the send rate limit would make typing them slow): the newest
    fifty show, "Load older messages" fetches the rest and then hides; "Yesterday" and
    "Today" separate the days; one author's run of messages shows its author line once."""
    import datetime as dt
    import sqlite3

    server = live_server()
    problems = PageProblems()
    context = browser.new_context(viewport=DESKTOP)
    amy = register(context, server, "amy", problems)

    now = dt.datetime.now().astimezone()
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    yesterday = [midnight - dt.timedelta(hours=12) + dt.timedelta(minutes=i) for i in range(30)]
    start = max(midnight, now - dt.timedelta(minutes=31))  # today, under a minute apart
    today = [start + (now - start) * (k / 31) for k in range(1, 31)]
    db = sqlite3.connect(server.data_dir / "plp.sqlite3", timeout=10)
    with db:
        (amy_id,) = db.execute("SELECT id FROM users WHERE username = 'amy'").fetchone()
        (general,) = db.execute("SELECT id FROM channels WHERE name = 'general'").fetchone()
        db.executemany(
            "INSERT INTO messages (channel_id, author_id, text, created_at) VALUES (?, ?, ?, ?)",
            [
                (general, amy_id, f"note {i}", int(when.timestamp() * 1000))
                for i, when in enumerate(yesterday + today)
            ],
        )
    db.close()

    open_chat(amy, server)
    amy.wait_for_selector("#messages .text:text-is('note 59')")
    assert amy.locator("#messages li[data-id]").count() == 50
    older = amy.locator("#older")
    assert older.is_visible()
    older.click()
    amy.wait_for_selector("#messages .text:text-is('note 0')")
    assert amy.locator("#messages li[data-id]").count() == 60
    older.wait_for(state="hidden")
    assert amy.locator("#messages li.day").all_inner_texts() == ["Yesterday", "Today"]
    # A minute apart by one author: one author line per run (per day here).
    assert amy.locator("#messages li.message:not(.grouped)").count() == 2
    assert page_does_not_scroll(amy) and no_sideways_scroll(amy)
    context.close()
    assert problems.items == []
