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
