"""Two Chromium users chat on /chat against a real `python run.py`; signing out elsewhere
sends the chat page to /login. Any console error or CSP violation fails the test."""

from __future__ import annotations

import pytest

from tests.support import PageProblems

pytestmark = pytest.mark.browser

TIMEOUT = 15_000  # ms; bounds a hang only


def register(context, server, username: str, display_name: str, problems: PageProblems):
    page = problems.watch(context.new_page())
    page.set_default_timeout(TIMEOUT)
    page.goto(server.url + "/register")
    page.fill("input[name=username]", username)
    page.fill("input[name=displayName]", display_name)
    page.fill("input[name=password]", "a long enough passphrase")
    page.click("button[type=submit]")
    page.wait_for_url(server.url + "/dashboard")
    return page


def open_chat(page, server) -> None:
    page.goto(server.url + "/chat")
    page.wait_for_selector("#channels button[aria-current=true]")
    # Enabled once the socket said hello and the channel is joined.
    page.wait_for_selector("textarea[name=message]:not([disabled])")


def test_two_users_chat_and_sign_out_elsewhere(browser, live_server):
    server = live_server()
    problems = PageProblems()
    amy_context = browser.new_context()
    ben_context = browser.new_context()
    amy = register(amy_context, server, "amy", "Amy <A>", problems)
    ben = register(ben_context, server, "ben", "Ben", problems)
    open_chat(amy, server)
    open_chat(ben, server)
    assert amy.inner_text("#channels button[aria-current=true]") == "#general"

    # Presence: each sees the other online.
    amy.wait_for_selector("#presence li:text-is('Ben')")
    ben.wait_for_selector("#presence li:text-is('Amy <A>')")

    # Typing reaches the other side.
    ben.click("textarea[name=message]")
    ben.keyboard.type("typing")
    amy.wait_for_selector("#typing:text('Ben is typing')")
    ben.fill("textarea[name=message]", "")

    # Enter sends; markup stays text; Shift+Enter makes a new line instead of sending.
    box = amy.locator("textarea[name=message]")
    box.click()
    amy.keyboard.type("hello <b>ben</b>")
    amy.keyboard.press("Shift+Enter")
    amy.keyboard.type("second line")
    assert amy.locator("#messages li").count() == 0
    amy.keyboard.press("Enter")
    ben_message = ben.locator("#messages li[data-id] .text")
    ben_message.first.wait_for()
    assert ben_message.first.text_content() == "hello <b>ben</b>\nsecond line"
    assert ben.locator("#messages b").count() == 0
    assert ben.locator("#messages li .author").first.text_content() == "Amy <A>"
    # Amy's own copy is confirmed (has a stored id), not pending.
    amy.wait_for_selector("#messages li[data-id]:not(.pending)")
    assert box.input_value() == ""

    ben.fill("textarea[name=message]", "hi amy")
    ben.press("textarea[name=message]", "Enter")
    amy.wait_for_selector("#messages li[data-id] .text:text-is('hi amy')")

    # A reload shows the history from the API, oldest first.
    ben.reload()
    ben.wait_for_selector("textarea[name=message]:not([disabled])")
    texts = ben.locator("#messages li .text").all_text_contents()
    assert texts == ["hello <b>ben</b>\nsecond line", "hi amy"]

    # Signing out in another tab ends the session: the chat tab goes to the login page.
    other = problems.watch(amy_context.new_page())
    other.set_default_timeout(TIMEOUT)
    other.goto(server.url + "/dashboard")
    other.click("#logout")
    other.wait_for_url(server.url + "/login")
    amy.wait_for_url(server.url + "/login?next=%2Fchat")

    # Ben saw Amy go offline.
    ben.wait_for_selector("#presence li:text-is('Amy <A>')", state="detached")

    amy_context.close()
    ben_context.close()
    assert problems.items == []


def test_a_send_stored_but_not_acknowledged_shows_once_after_reconnect(browser, live_server):
    """The connection drops after the server stored a message but before its ack arrived:
    the page marks it unconfirmed, and after reconnecting (history reloaded) shows it once."""
    import json

    server = live_server()
    problems = PageProblems()
    context = browser.new_context()
    amy = register(context, server, "amy", "Amy", problems)
    dropped: list[str] = []

    def relay(ws) -> None:
        upstream = ws.connect_to_server()

        def from_server(message) -> None:
            frame = json.loads(message)
            if frame.get("type") == "message" and frame.get("clientId") and not dropped:
                # Stored and acknowledged by the server; the ack is lost with the connection.
                dropped.append(frame["clientId"])
                ws.close(code=1012, reason="test: connection lost")
                upstream.close()
                return
            ws.send(message)

        upstream.on_message(from_server)

    amy.route_web_socket("**/ws/chat", relay)
    open_chat(amy, server)
    amy.fill("textarea[name=message]", "did it arrive?")
    amy.press("textarea[name=message]", "Enter")
    # Marked as not confirmed while disconnected...
    amy.wait_for_selector("#messages li.failed .text:text-is('did it arrive?')")
    # ...and once reconnected, history has it: the stored copy only, no failed duplicate.
    amy.wait_for_selector("#messages li[data-id] .text:text-is('did it arrive?')")
    amy.wait_for_selector("#messages li.failed", state="detached")
    assert amy.locator("#messages li .text").all_text_contents() == ["did it arrive?"]
    assert len(dropped) == 1
    context.close()
    assert problems.items == []
