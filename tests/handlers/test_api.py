"""The JSON API's own routes (plp/handlers/api.py): unknown paths answer JSON, not pages."""

from __future__ import annotations

import pytest

from tests.support import body


@pytest.mark.gen_test
@pytest.mark.parametrize("method", ["GET", "POST", "DELETE", "TRACE"])
async def test_bare_api_path_is_a_json_404(client, method):
    response = await client.fetch("/api", method)
    assert response.code in (404, 405)
    assert response.headers["Content-Type"].startswith("application/json")
    assert body(response)["error"] in ("not_found", "method_not_allowed")
    assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.gen_test
async def test_me_follows_every_change_of_the_record(client, ctx):
    # The body is made once per version of the user record: each change is a new version.
    response = await client.register("kid", displayName="Kid")
    user_id = body(response)["user"]["id"]
    first = body(await client.fetch("/api/users/me"))["user"]
    assert (first["displayName"], first["role"]) == ("Kid", "student")
    assert body(await client.fetch("/api/users/me"))["user"] == first  # same version
    await ctx.db.update_user(user_id, display_name="Kiddo", role="teacher")
    second = body(await client.fetch("/api/users/me"))["user"]
    assert (second["displayName"], second["role"]) == ("Kiddo", "teacher")
    assert second["createdAt"] == first["createdAt"]
    await ctx.db.update_user(user_id, display_name="Kid", role="student")  # back, as before
    assert body(await client.fetch("/api/users/me"))["user"] == first
    await ctx.db.update_user(user_id, disabled=True)
    assert (await client.fetch("/api/users/me")).code == 401
