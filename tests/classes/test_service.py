"""The classes service without HTTP (plp/classes/): join codes, the join-failure limit in
memory and shared through real Redis, and the rules the handlers rely on."""

from __future__ import annotations

import secrets

import pytest

from plp.classes import members, service, visibility
from plp.classes.codes import ALPHABET, CODE_LENGTH, new_join_code, normalize_code
from plp.errors import Conflict, Forbidden, InvalidInput, NotFound, RateLimited
from plp.throttle import JOIN_WINDOW, MemoryThrottle
from tests.support import backends


def test_codes_use_the_alphabet_and_read_forgivingly():
    codes = {new_join_code() for _ in range(200)}
    assert len(codes) == 200
    assert all(len(c) == CODE_LENGTH and set(c) <= set(ALPHABET) for c in codes)
    assert not set("01ILOU") & set(ALPHABET)  # no look-alikes
    assert normalize_code(" abcd-efgh ") == "ABCDEFGH"
    assert normalize_code("ab cd ef gh") == "ABCDEFGH"
    for bad in ("", "ABCDEFG", "ABCDEFGHJ", "ABCDEFG1", "ABCDEFGO", "ÄBCDEFGH", "ABCD_EFG"):
        assert normalize_code(bad) is None, bad


def _limits(**kwargs):
    return dict(account_limit=5, address_limit=30, registration_limit=30, **kwargs)


@pytest.mark.gen_test
async def test_memory_join_limit_slides_over_an_hour(clock):
    throttle = MemoryThrottle(**_limits(join_limit=3, clock=clock))
    for _ in range(3):
        assert await throttle.join_wait(7) == 0
        await throttle.join_failed(7)
    wait = await throttle.join_wait(7)
    assert 0 < wait <= JOIN_WINDOW
    assert await throttle.join_wait(8) == 0  # per user
    clock.advance(JOIN_WINDOW + 1)
    assert await throttle.join_wait(7) == 0
    assert await throttle.prune() >= 1


@pytest.mark.gen_test
async def test_redis_join_limit_is_shared_between_processes(clock):
    from plp.redis.throttle import RedisThrottle

    url = backends.redis_url()
    prefix = backends.unique_prefix()
    one = RedisThrottle(url, prefix=prefix, **_limits(join_limit=4, clock=clock))
    two = RedisThrottle(url, prefix=prefix, **_limits(join_limit=4, clock=clock))
    try:
        for throttle in (one, two, one, two):
            assert await throttle.join_wait(5) == 0
            await throttle.join_failed(5)
        assert await one.join_wait(5) > 0 and await two.join_wait(5) > 0
        assert await two.join_wait(6) == 0
        clock.advance(JOIN_WINDOW + 1)
        assert await one.join_wait(5) == 0
    finally:
        await one.close()
        await two.close()
        backends.delete_prefix(url, prefix)


@pytest.fixture
def people(make_user):
    async def make():
        return (
            await make_user("tess", "teacher"),
            await make_user("kid"),
            await make_user("boss", "admin"),
        )

    return make


@pytest.mark.gen_test
async def test_rules_without_http(ctx, people):
    tess, kid, boss = await people()
    with pytest.raises(Forbidden):
        await service.create_class(ctx, kid, "mine", ip=None)
    view = await service.create_class(ctx, tess, "5A", ip="10.0.0.1")
    class_id = view.record.id
    with pytest.raises(Conflict):
        await service.create_class(ctx, boss, "5a", ip=None)
    with pytest.raises(NotFound):
        await service.view_class(ctx, kid, class_id)
    with pytest.raises(NotFound):
        await members.list_members(ctx, kid, class_id)
    code = view.record.join_code
    joined = await service.join_by_code(ctx, kid, code.lower(), ip=None)
    assert joined.my_role == "student" and not joined.show_code
    with pytest.raises(Forbidden):
        await service.reset_code(ctx, kid, class_id)
    # An admin who is no member sees and manages it.
    as_admin = await service.view_class(ctx, boss, class_id)
    assert as_admin.my_role is None and as_admin.show_code
    await service.close_code(ctx, boss, class_id)
    with pytest.raises(NotFound):
        await service.join_by_code(ctx, boss, code, ip=None)
    with pytest.raises(InvalidInput):
        await members.add_member(ctx, tess, class_id, "kid", "teacher", ip=None)
    added = await members.add_member(ctx, tess, class_id, "Boss", "teacher", ip=None)
    assert added.class_role == "teacher"
    # A teacher demoted to student keeps the membership but not the powers.
    demoted = await ctx.db.update_user(tess.id, role="student")
    with pytest.raises(Forbidden):
        await service.rename_class(ctx, demoted, class_id, "x", ip=None)
    assert not visibility.is_class_teacher(demoted, "teacher")
    events = [e.event for e in await ctx.db.list_audit(50)]
    assert {"class_created", "class_joined", "class_member_added"} <= set(events)


@pytest.mark.gen_test
async def test_visibility_is_the_one_rule(ctx, people):
    tess, kid, boss = await people()
    view = await service.create_class(ctx, tess, "5A", ip=None)
    channel = await ctx.db.create_channel("maths", "", "discussion", tess.id, view.record.id)
    with pytest.raises(NotFound):
        await visibility.visible_channel(ctx, kid, channel.id)
    assert not await visibility.sees_channel(ctx, kid, channel.id)
    assert not await visibility.sees_channel(ctx, kid, 10**9)
    assert await visibility.visible_channel(ctx, boss, channel.id) == channel
    assert await visibility.visible_channel(ctx, tess, channel.id) == channel
    assert [c.name for c in await visibility.visible_channels(ctx, kid)] == ["general"]
    await service.join_by_code(ctx, kid, view.record.join_code, ip=None)
    assert [c.name for c in await visibility.visible_channels(ctx, kid)] == ["general", "maths"]


@pytest.mark.gen_test
@pytest.mark.parametrize("settings", [{"class_join_failures": 2}], indirect=True)
async def test_wrong_codes_are_limited_and_never_audited(ctx, people):
    _, kid, _ = await people()
    typed = [secrets.token_hex(4), "ZZZZ-ZZZZ"]
    for guess in typed:
        with pytest.raises(NotFound):
            await service.join_by_code(ctx, kid, guess, ip=None)
    with pytest.raises(RateLimited) as refused:
        await service.join_by_code(ctx, kid, "ABCDEFGH", ip=None)
    assert refused.value.retry_after > 0
    rows = await ctx.db.list_audit(50)
    assert [e.event for e in rows] == ["class_join_failed"] * 2
    text = repr([e.to_json() for e in rows])
    assert not any(guess in text or guess.replace("-", "") in text for guess in typed)
