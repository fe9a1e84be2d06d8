"""Classes in two real Chromium browsers against a real `python run.py` (issue 13, SPEC §12):
a teacher creates a class on /classes and reads its code, makes the class's channel there; a
pupil joins with the code and chats in it; the teacher deletes the pupil's message and it
leaves the pupil's screen; the teacher removes the pupil and the channel leaves the pupil's
/chat without a reload. Every step waits on what the page shows; console errors fail it."""

from __future__ import annotations

import re

import pytest

from tests.support import PASSWORD, PageProblems
from tests.support.tour import create_user

pytestmark = pytest.mark.browser

TIMEOUT = 15_000  # ms; bounds a hang only
CLASS = "5A Maths"
CHANNEL = "#maths-5a"


def signed_in(context, server, username: str, problems: PageProblems, *, register: bool):
    page = problems.watch(context.new_page())
    page.set_default_timeout(TIMEOUT)
    page.goto(server.url + ("/register" if register else "/login"))
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("main button[type=submit]")
    page.wait_for_url(server.url + "/dashboard")
    return page


def test_teacher_and_pupil_on_classes_and_chat(browser, live_server):
    server = live_server()
    create_user(server, "tess", "teacher")
    problems = PageProblems()
    teacher = signed_in(browser.new_context(), server, "tess", problems, register=False)
    pupil = signed_in(browser.new_context(), server, "pia", problems, register=True)

    # The teacher creates the class from the nav's Classes page and reads its code.
    teacher.click("nav a:text-is('Classes')")
    teacher.wait_for_url(server.url + "/classes")
    teacher.fill("#create-name", CLASS)
    teacher.click("button:text-is('Create class')")
    teacher.wait_for_url(re.compile(r".*/classes/\d+$"))
    class_url = teacher.url
    assert teacher.inner_text("#notice") == f"Class {CLASS} created. Its join code is below."
    code = teacher.inner_text("#join-code")
    assert re.fullmatch(r"[A-Z0-9]{4}-[A-Z0-9]{4}", code), code

    # ...and makes the class's channel there.
    teacher.fill("#channel-name", CHANNEL[1:])
    teacher.fill("#channel-description", "Homework questions")
    teacher.click("button:text-is('Create channel')")
    teacher.wait_for_selector(f"#notice:text-is('Channel {CHANNEL} created.')")

    # The pupil joins with the code as read off the board, in small letters.
    pupil.click("nav a:text-is('Classes')")
    pupil.fill("#join-code", code.lower())
    pupil.click("button:text-is('Join class')")
    pupil.wait_for_selector(f"#notice:text-is('You are in class {CLASS}.')")

    # On /chat the class's channel is under the class's heading, before the school-wide ones.
    pupil.goto(server.url + "/chat")
    headings = pupil.locator("#channels .group-title")
    headings.first.wait_for()
    assert headings.all_inner_texts() == [CLASS, "School-wide"]
    pupil.click(f"#channels button:has-text('{CHANNEL}')")
    pupil.wait_for_selector("textarea[name=message]:not([disabled])")
    pupil.fill("textarea[name=message]", "is question 3 for today?")
    pupil.press("textarea[name=message]", "Enter")
    mine = "#messages li[data-id]:has(.text:text-is('is question 3 for today?'))"
    pupil.wait_for_selector(mine)
    assert pupil.locator(f"{mine} button.delete").count() == 1  # their own

    # The teacher deletes the pupil's message from the class channel.
    teacher.goto(server.url + "/chat")
    teacher.click(f"#channels button:has-text('{CHANNEL}')")
    teacher.wait_for_selector(mine)
    teacher.wait_for_selector("textarea[name=message]:not([disabled])")
    teacher.fill("textarea[name=message]", "homework: page 12")
    teacher.press("textarea[name=message]", "Enter")
    theirs = "#messages li[data-id]:has(.text:text-is('homework: page 12'))"
    pupil.wait_for_selector(theirs)
    assert pupil.locator(f"{theirs} button.delete").count() == 0  # not the pupil's to delete
    assert teacher.locator(f"{theirs} button.delete").count() == 1
    teacher.on("dialog", lambda dialog: dialog.accept())
    teacher.click(f"{mine} button.delete")
    teacher.wait_for_selector(mine, state="detached")
    pupil.wait_for_selector(mine, state="detached")

    # The teacher removes the pupil; the pupil's open /chat loses the channel, no reload.
    pupil.evaluate("window.stillThisPage = true")
    teacher.goto(class_url)
    teacher.click("button[aria-label='Remove pia from the class']")
    teacher.wait_for_selector(f"#notice:text-is('pia is no longer in {CLASS}.')")
    assert teacher.locator("#roster tr[data-user='pia']").count() == 0
    pupil.wait_for_selector(f"#channels button:has-text('{CHANNEL}')", state="detached")
    assert pupil.evaluate("window.stillThisPage") is True
    assert pupil.locator("#channels .group-title").all_inner_texts() == ["School-wide"]
    assert pupil.inner_text("#channels button[aria-current=true]") == "#general"
    assert "no longer yours" in pupil.inner_text("#status")
    assert pupil.locator("#messages li[data-id]").count() == 0

    # Back on /classes the pupil has no class.
    pupil.goto(server.url + "/classes")
    pupil.wait_for_selector("#no-classes")
    assert problems.items == []
