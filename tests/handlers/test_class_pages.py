"""The /classes pages and /chat's grouped channel list (SPEC §7, §12) over real HTTP: every
form with good and bad input, XSRF, who may post what (403 and 404 pages as the API
answers), errors at their fields, and notices that name what was done."""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser
from urllib.parse import urlencode

import pytest

from tests.support import Client


class PageAudit(HTMLParser):
    """Inline scripts, on* attributes and POST forms without an `_xsrf` field."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.problems: list[str] = []
        self._form: bool | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "script" and "src" not in values:
            self.problems.append("inline <script>")
        self.problems += [f"{n}= on <{tag}>" for n in values if n.startswith("on")]
        if tag == "form":
            self._form = values.get("method", "get").lower() == "get"
        if tag == "input" and values.get("name") == "_xsrf" and values.get("value"):
            self._form = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "form" and not self._form:
            self.problems.append("a POST form without _xsrf")


class FormClient(Client):
    """Posts forms as a browser does (`_xsrf` as a field); every page is checked."""

    async def fetch(self, path, method="GET", **kwargs):
        response = await super().fetch(path, method, **kwargs)
        assert response.code < 500, (path, response.code, response.body[:300])
        if response.headers.get("Content-Type", "").startswith("text/html"):
            audit = PageAudit()
            audit.feed(response.body.decode())
            assert audit.problems == [], (method, path)
        return response

    async def submit(self, path: str, data: dict[str, str], *, xsrf: bool = True):
        fields = dict(data)
        if xsrf:
            if "_xsrf" not in self.cookies:
                await self.fetch("/api/auth/csrf")
            fields["_xsrf"] = self.cookies["_xsrf"]
        return await self.fetch(
            path,
            "POST",
            body=urlencode(fields),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            xsrf=False,
        )

    async def page(self, path: str) -> str:
        response = await self.fetch(path)
        assert response.code == 200, (path, response.code)
        return response.body.decode()


@pytest.fixture
def person(make_user, session_cookie, http_client, base_url):
    """A signed-in FormClient for a new user of that role (`.user` is the record)."""

    async def make(username: str, role: str = "student") -> FormClient:
        user = await make_user(username, role)
        name, value = (await session_cookie(user.id)).split("=", 1)
        client = FormClient(http_client, base_url)
        client.cookies[name] = value
        client.user = user
        return client

    return make


def text(response) -> str:
    return response.body.decode()


def notice(page: str) -> str:
    found = re.search(r'<p class="notice" id="notice" role="status">(.*?)</p>', page, re.S)
    return found.group(1) if found else ""


def assert_field_error(page: str, field: str, words: str) -> None:
    """The field is marked invalid and described by its error, which says `words`."""
    tag = re.search(rf'<(?:input|select)[^>]*id="{field}"[^>]*>', page)
    assert tag, field
    assert 'aria-invalid="true"' in tag.group(0), tag.group(0)
    described = re.search(r'aria-describedby="([^"]+)"', tag.group(0)).group(1).split()
    assert f"{field}-error" in described
    error = re.search(rf'<span class="field-error" id="{field}-error">(.*?)</span>', page, re.S)
    assert error and words in html.unescape(error.group(1)), (field, error and error.group(1))


async def make_class(teacher: FormClient, name: str = "5A") -> int:
    response = await teacher.submit("/classes", {"name": name})
    assert response.code == 302, text(response)
    return int(response.headers["Location"].rsplit("/", 1)[1])


async def code_of(ctx, class_id: int) -> str:
    return (await ctx.db.get_class(class_id)).join_code


# --- the list, creating and joining -----------------------------------------------------------


@pytest.mark.gen_test
async def test_signed_out_goes_to_login_and_nav_links_classes(person, http_client, base_url):
    visitor = FormClient(http_client, base_url)
    response = await visitor.fetch("/classes")
    assert response.code == 302
    assert response.headers["Location"] == "/login?next=%2Fclasses"
    assert (await visitor.submit("/classes/join", {"code": "ABCDEFGH"})).code == 401
    kid = await person("kid")
    assert 'href="/classes"' in await kid.page("/dashboard")
    page = await kid.page("/classes")
    assert "not in a class yet" in page
    assert 'action="/classes"' not in page  # no "create" form for a student


@pytest.mark.gen_test
async def test_teacher_creates_a_class_and_reads_its_code(person, ctx):
    tess = await person("tess", "teacher")
    response = await tess.submit("/classes", {"name": "  Class 5A  "})
    assert response.code == 302
    class_id = int(response.headers["Location"].rsplit("/", 1)[1])
    page = await tess.page(f"/classes/{class_id}")
    code = await code_of(ctx, class_id)
    assert notice(page) == "Class Class 5A created. Its join code is below."
    assert f'data-code="{code}">{code[:4]}-{code[4:]}</p>' in page
    assert 'data-user="tess"' in page  # the roster: its creator, a class teacher
    assert "New code" in page and "Close joining" in page
    # The notice is said once.
    assert notice(await tess.page(f"/classes/{class_id}")) == ""
    listing = await tess.page("/classes")
    assert f'href="/classes/{class_id}"' in listing and "class teacher" in listing


@pytest.mark.gen_test
async def test_create_refusals_are_shown_at_the_name(person):
    tess = await person("tess", "teacher")
    await make_class(tess, "5A")
    for name, status, words in [
        ("", 400, "printable characters"),
        ("x" * 65, 400, "printable characters"),
        ("5a", 409, "Taken"),
    ]:
        response = await tess.submit("/classes", {"name": name})
        assert response.code == status, name
        assert_field_error(text(response), "create-name", words)
        assert 'id="form-error"' in text(response)


@pytest.mark.gen_test
async def test_a_hostile_class_name_is_text(person, ctx):
    tess = await person("tess", "teacher")
    class_id = await make_class(tess, "<script>alert(1)</script>")
    for path in ("/classes", f"/classes/{class_id}", f"/classes/{class_id}/delete"):
        page = await tess.page(path)
        assert "<script>alert" not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


@pytest.mark.gen_test
async def test_a_student_joins_with_a_code_as_typed(person, ctx):
    tess = await person("tess", "teacher")
    class_id = await make_class(tess)
    code = await code_of(ctx, class_id)
    kid = await person("kid")
    response = await kid.submit("/classes/join", {"code": f" {code[:4].lower()}-{code[4:]} "})
    assert response.code == 302 and response.headers["Location"] == "/classes"
    page = await kid.page("/classes")
    assert notice(page) == "You are in class 5A."
    assert f'href="/classes/{class_id}/leave"' in page and "class student" in page
    # A student sees the class, its roster and channels, but not its code or controls.
    detail = await kid.page(f"/classes/{class_id}")
    assert code not in detail and "New code" not in detail
    assert 'data-user="kid"' in detail and "/remove" not in detail


@pytest.mark.parametrize("settings", [{"class_join_failures": 2}], indirect=True)
@pytest.mark.gen_test
async def test_wrong_codes_are_shown_at_the_field_then_limited(person, ctx):
    tess = await person("tess", "teacher")
    code = await code_of(ctx, await make_class(tess))
    kid = await person("kid")
    # An empty form is not a guess, and a too-long one is refused before any lookup.
    response = await kid.submit("/classes/join", {"code": "  "})
    assert response.code == 400
    assert_field_error(text(response), "join-code", "Type the join code")
    response = await kid.submit("/classes/join", {"code": "x" * 65})
    assert response.code == 400
    assert_field_error(text(response), "join-code", "join code")
    for _ in range(2):
        response = await kid.submit("/classes/join", {"code": "ZZZZZZZZ"})
        assert response.code == 404
        assert_field_error(text(response), "join-code", "No class has this code")
        assert 'value="ZZZZZZZZ"' in text(response)  # kept for correcting
    response = await kid.submit("/classes/join", {"code": code})  # right, but too late
    assert response.code == 429
    assert int(response.headers["Retry-After"]) > 0
    assert_field_error(text(response), "join-code", "Too many wrong codes. Try again in about")
    assert await ctx.db.classes_of(kid.user.id) == []


# --- managing one class -----------------------------------------------------------------------


@pytest.mark.gen_test
async def test_new_code_and_closing_joining(person, ctx):
    tess = await person("tess", "teacher")
    class_id = await make_class(tess)
    old = await code_of(ctx, class_id)
    response = await tess.submit(f"/classes/{class_id}/code", {"action": "new"})
    assert response.code == 302 and response.headers["Location"] == f"/classes/{class_id}"
    new = await code_of(ctx, class_id)
    assert new != old
    page = await tess.page(f"/classes/{class_id}")
    assert "A new join code is shown below" in notice(page) and new[4:] in page
    assert old not in page
    kid = await person("kid")
    assert (await kid.submit("/classes/join", {"code": old})).code == 404
    assert (await tess.submit(f"/classes/{class_id}/code", {"action": "close"})).code == 302
    page = await tess.page(f"/classes/{class_id}")
    assert 'id="join-closed"' in page and "Close joining" not in page
    assert await code_of(ctx, class_id) is None
    assert (await kid.submit("/classes/join", {"code": new})).code == 404
    assert (await tess.submit(f"/classes/{class_id}/code", {"action": "open"})).code == 400


@pytest.mark.gen_test
async def test_rename(person, ctx):
    tess = await person("tess", "teacher")
    class_id = await make_class(tess, "5A")
    await make_class(tess, "5B")
    response = await tess.submit(f"/classes/{class_id}/rename", {"name": "5A (2027)"})
    assert response.code == 302
    page = await tess.page(f"/classes/{class_id}")
    assert notice(page) == "The class is now called 5A (2027)."
    for name, status, words in [("", 400, "printable"), ("5b", 409, "Taken"), ("\x07", 400, "")]:
        response = await tess.submit(f"/classes/{class_id}/rename", {"name": name})
        assert response.code == status, name
        assert_field_error(text(response), "rename-name", words)
    assert (await ctx.db.get_class(class_id)).name == "5A (2027)"


@pytest.mark.gen_test
async def test_roster_add_and_remove(person, ctx):
    tess = await person("tess", "teacher")
    class_id = await make_class(tess)
    kid = await person("kid")
    await person("ted", "teacher")
    response = await tess.submit(f"/classes/{class_id}/members", {"username": "KID"})
    assert response.code == 302
    page = await tess.page(f"/classes/{class_id}")
    assert notice(page) == "kid is a class student of 5A."
    row = re.search(r'<tr data-user="kid">.*?</tr>', page, re.S).group(0)
    assert "Kid" in row and "student" in row and f"/members/{kid.user.id}/remove" in row
    response = await tess.submit(
        f"/classes/{class_id}/members", {"username": "ted", "classRole": "teacher"}
    )
    assert response.code == 302
    assert await ctx.db.class_role(class_id, (await ctx.db.get_user(3)).id) == "teacher"
    refusals = [
        ({"username": "nobody"}, 404, "member-username", "No account has this username"),
        ({"username": "kid", "classRole": "teacher"}, 400, "member-classRole", "teacher and"),
        ({"username": "kid", "classRole": "boss"}, 400, "member-classRole", "'student'"),
        ({"username": "k" * 65}, 400, "member-username", "username"),
    ]
    for data, status, field, words in refusals:
        response = await tess.submit(f"/classes/{class_id}/members", data)
        assert response.code == status, data
        assert_field_error(text(response), field, words)
        assert f'value="{data["username"]}"' in text(response)
    assert await ctx.db.class_role(class_id, kid.user.id) == "student"
    response = await tess.submit(f"/classes/{class_id}/members/{kid.user.id}/remove", {})
    assert response.code == 302
    page = await tess.page(f"/classes/{class_id}")
    assert notice(page) == "kid is no longer in 5A." and 'data-user="kid"' not in page
    # Not a member (any more), or not a user at all: 404.
    for user_id in (kid.user.id, 999):
        response = await tess.submit(f"/classes/{class_id}/members/{user_id}/remove", {})
        assert response.code == 404
    # A teacher removing themself lands on the list: the class is not theirs to see now.
    response = await tess.submit(f"/classes/{class_id}/members/{tess.user.id}/remove", {})
    assert response.headers["Location"] == "/classes"
    assert notice(await tess.page("/classes")) == "tess is no longer in 5A."


@pytest.mark.gen_test
async def test_class_channels_create_and_delete(person, ctx):
    tess = await person("tess", "teacher")
    class_id = await make_class(tess, "5A")
    other = await make_class(tess, "5B")
    data = {"name": "Maths", "description": "Sums", "kind": "announcement"}
    response = await tess.submit(f"/classes/{class_id}/channels", data)
    assert response.code == 302
    page = await tess.page(f"/classes/{class_id}")
    assert notice(page) == "Channel #maths created."
    (channel,) = [c for c in await ctx.db.list_channels() if c.class_id == class_id]
    assert (channel.name, channel.description, channel.kind) == ("maths", "Sums", "announcement")
    assert f'href="/chat#{channel.id}"' in page
    refusals = [
        ({"name": "no spaces!"}, 400, "channel-name", "a-z"),
        ({"name": "maths"}, 409, "channel-name", "has a channel with that name"),
        ({"name": "art", "kind": "party"}, 400, "channel-kind", "'discussion'"),
        ({"name": "art", "description": "d" * 300}, 400, "channel-description", "256"),
    ]
    for data, status, field, words in refusals:
        response = await tess.submit(f"/classes/{class_id}/channels", data)
        assert response.code == status, data
        assert_field_error(text(response), field, words)
    # The same name in another class is another channel.
    assert (await tess.submit(f"/classes/{other}/channels", {"name": "maths"})).code == 302
    # A channel deleted under a class it is not in: 404, and it stays.
    path = f"/classes/{other}/channels/{channel.id}/delete"
    assert (await tess.submit(path, {})).code == 404
    response = await tess.submit(f"/classes/{class_id}/channels/{channel.id}/delete", {})
    assert response.code == 302
    assert notice(await tess.page(f"/classes/{class_id}")) == (
        "Channel #maths is deleted, with its messages."
    )
    assert await ctx.db.get_channel(channel.id) is None


@pytest.mark.gen_test
async def test_leave_and_delete_ask_first(person, ctx):
    tess = await person("tess", "teacher")
    class_id = await make_class(tess)
    kid = await person("kid")
    await ctx.db.join_class(class_id, kid.user.id)
    page = await kid.page(f"/classes/{class_id}/leave")
    assert "Leave 5A?" in page and "Leave the class" in page
    assert await ctx.db.class_role(class_id, kid.user.id) == "student"  # GET changes nothing
    response = await kid.submit(f"/classes/{class_id}/leave", {})
    assert response.code == 302
    assert notice(await kid.page("/classes")) == "You left 5A."
    assert (await kid.fetch(f"/classes/{class_id}")).code == 404
    assert (await kid.submit(f"/classes/{class_id}/leave", {})).code == 404
    page = await tess.page(f"/classes/{class_id}/delete")
    assert "Delete 5A?" in page
    assert (await tess.submit(f"/classes/{class_id}/delete", {})).code == 302
    assert notice(await tess.page("/classes")) == "Class 5A is deleted, with its channels."
    assert await ctx.db.get_class(class_id) is None
    assert (await tess.fetch(f"/classes/{class_id}")).code == 404


# --- who may post what ------------------------------------------------------------------------


def teacher_forms(class_id: int, user_id: int, channel_id: int) -> list[tuple[str, dict]]:
    return [
        (f"/classes/{class_id}/rename", {"name": "Mine now"}),
        (f"/classes/{class_id}/code", {"action": "new"}),
        (f"/classes/{class_id}/code", {"action": "close"}),
        (f"/classes/{class_id}/members", {"username": "kid", "classRole": "student"}),
        (f"/classes/{class_id}/members/{user_id}/remove", {}),
        (f"/classes/{class_id}/channels", {"name": "takeover"}),
        (f"/classes/{class_id}/channels/{channel_id}/delete", {}),
        (f"/classes/{class_id}/delete", {}),
    ]


@pytest.mark.gen_test
async def test_a_student_posting_teacher_forms_gets_403_and_nothing_changes(person, ctx):
    tess = await person("tess", "teacher")
    class_id = await make_class(tess)
    channel = await ctx.db.create_channel("maths", "", "discussion", tess.user.id, class_id)
    kid = await person("kid")
    await ctx.db.join_class(class_id, kid.user.id)
    code = await code_of(ctx, class_id)
    assert (await kid.submit("/classes", {"name": "Kids only"})).code == 403
    for path, data in teacher_forms(class_id, tess.user.id, channel.id):
        response = await kid.submit(path, data)
        assert response.code == 403, path
        assert "403" in text(response) and "ask your teacher" in text(response)
    assert (await kid.fetch(f"/classes/{class_id}/delete")).code == 403
    record = await ctx.db.get_class(class_id)
    assert (record.name, record.join_code) == ("5A", code)
    assert await ctx.db.get_channel(channel.id) is not None
    assert await ctx.db.class_role(class_id, tess.user.id) == "teacher"
    assert len(await ctx.db.list_classes()) == 1


@pytest.mark.gen_test
async def test_a_class_one_cannot_see_is_the_404_page(person, ctx):
    tess = await person("tess", "teacher")
    class_id = await make_class(tess)
    channel = await ctx.db.create_channel("maths", "", "discussion", tess.user.id, class_id)
    for outsider in (await person("ted", "teacher"), await person("kid")):
        for path in (f"/classes/{class_id}", f"/classes/{class_id}/leave"):
            response = await outsider.fetch(path)
            assert response.code == 404, path
            assert "5A" not in text(response)
        forms = teacher_forms(class_id, tess.user.id, channel.id)
        for path, data in [*forms, (f"/classes/{class_id}/leave", {})]:
            assert (await outsider.submit(path, data)).code == 404, path
    for raw in ("999", "abc", "1.0", "-1", "9" * 30):
        assert (await tess.fetch(f"/classes/{raw}")).code == 404
        assert (await tess.submit(f"/classes/{raw}/rename", {"name": "x"})).code == 404
    assert (await ctx.db.get_class(class_id)).name == "5A"


@pytest.mark.gen_test
async def test_an_admin_manages_any_class(person, ctx):
    tess = await person("tess", "teacher")
    class_id = await make_class(tess)
    boss = await person("boss", "admin")
    page = await boss.page("/classes")
    assert "All classes" in page and f'href="/classes/{class_id}"' in page
    assert (await code_of(ctx, class_id)) in await boss.page(f"/classes/{class_id}")
    assert (await boss.submit(f"/classes/{class_id}/rename", {"name": "5Z"})).code == 302


@pytest.mark.gen_test
async def test_every_form_needs_xsrf(person, ctx):
    tess = await person("tess", "teacher")
    class_id = await make_class(tess)
    channel = await ctx.db.create_channel("maths", "", "discussion", tess.user.id, class_id)
    forms = [
        ("/classes", {"name": "6A"}),
        ("/classes/join", {"code": "ABCDEFGH"}),
        (f"/classes/{class_id}/leave", {}),
        *teacher_forms(class_id, tess.user.id, channel.id),
    ]
    for path, data in forms:
        response = await tess.submit(path, data, xsrf=False)
        assert response.code == 403, path
        assert "XSRF" in text(response)
    assert len(await ctx.db.list_classes()) == 1
    assert await ctx.db.get_channel(channel.id) is not None


@pytest.mark.gen_test
async def test_a_forged_notice_is_not_shown(person):
    kid = await person("kid")
    kid.cookies["plp_notice"] = "You won a prize"
    page = await kid.page("/classes")
    assert "prize" not in page and notice(page) == ""


# --- /chat groups channels by class -----------------------------------------------------------


@pytest.mark.gen_test
async def test_chat_lists_own_channels_grouped_by_class(person, ctx):
    tess = await person("tess", "teacher")
    five = await make_class(tess, "5A")
    nine = await make_class(tess, "9C")
    maths = await ctx.db.create_channel("maths", "", "discussion", tess.user.id, five)
    secret = await ctx.db.create_channel("secret-9c", "", "discussion", tess.user.id, nine)
    kid = await person("kid")
    await ctx.db.join_class(five, kid.user.id)
    page = await kid.page("/chat")
    titles = re.findall(r'<h3 class="group-title" id="group-(\w+)">(.*?)</h3>', page)
    assert titles == [(str(five), "5A"), ("school", "School-wide")]
    assert page.index(f'data-channel="{maths.id}"') < page.index("#general")
    assert "secret-9c" not in page and "9C" not in page
    assert f'data-user-id="{kid.user.id}"' in page and 'data-teaches=""' in page
    assert "secret-9c" not in await kid.page("/dashboard")
    teacher_page = await tess.page("/chat")
    assert f'data-teaches="{five} {nine}"' in teacher_page
    assert f'data-channel="{secret.id}"' in teacher_page


@pytest.mark.gen_test
async def test_hostile_form_bodies_are_clear_4xx(person, ctx):
    tess = await person("tess", "teacher")
    class_id = await make_class(tess)
    xsrf = tess.cookies["_xsrf"]
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    cases = [
        (f"_xsrf={xsrf}&name=%FF%FE", 400, "5A"),  # not UTF-8
        (f"_xsrf={xsrf}&name=" + "x" * 70_000, 413, "5A"),
        (f"_xsrf={xsrf}&name=a%00b", 302, "a b"),  # Tornado reads a control character as " "
        (f"_xsrf={xsrf}&name=6A&name=6B", 302, "6B"),  # repeated: the last one
    ]
    for raw, status, stored in cases:
        response = await tess.fetch(
            f"/classes/{class_id}/rename", "POST", body=raw, headers=form, xsrf=False
        )
        assert response.code == status, raw[:40]
        assert (await ctx.db.get_class(class_id)).name == stored


# --- reset codes from the roster (SPEC §13) ---------------------------------------------------


@pytest.mark.gen_test
async def test_roster_makes_a_reset_code_for_a_class_student(person, ctx, clock):
    teacher = await person("tess", "teacher")
    kid = await person("kid")
    other = await person("other")
    class_id = await make_class(teacher)
    await teacher.submit(f"/classes/{class_id}/members", {"username": "kid"})
    page = await teacher.page(f"/classes/{class_id}")
    action = f"/classes/{class_id}/members/{kid.user.id}/reset-code"
    assert f'action="{action}"' in page
    assert "Make reset code" in page
    # A class student never sees the button.
    assert "Make reset code" not in await kid.page(f"/classes/{class_id}")
    response = await teacher.submit(action, {})
    assert response.code == 200
    shown = re.search(r'<code id="reset-code">([A-Z0-9-]+)</code>', text(response)).group(1)
    assert re.fullmatch(r"[A-Z2-9]{4}-[A-Z2-9]{4}-[A-Z2-9]{4}", shown)
    assert f'href="/classes/{class_id}"' in text(response)
    assert response.headers["Cache-Control"] == "no-store"
    # Not a student of this class (or no such user): the 404 page, nothing issued.
    for target in (other.user.id, teacher.user.id, 999):
        response = await teacher.submit(f"/classes/{class_id}/members/{target}/reset-code", {})
        assert response.code == 404
    assert await ctx.db.get_reset_code(other.user.id) is None
    # A pupil may not make codes for classmates: 403 page, as the API answers.
    await teacher.submit(f"/classes/{class_id}/members", {"username": "other"})
    assert (
        await kid.submit(f"/classes/{class_id}/members/{other.user.id}/reset-code", {})
    ).code == 403
    # After the recent-sign-in window the page asks for the password first.
    clock.advance(ctx.settings.reauth_window + 1)
    response = await teacher.submit(action, {})
    assert response.code == 200 and "Confirm it is you" in text(response)
    assert (await teacher.submit(action, {}, xsrf=False)).code == 403
