"""The first start's log (issue 12): where to open the browser, how to make the first admin,
and no line that sounds like a fault when there are simply no saved sessions yet."""

from __future__ import annotations

from tests.support.tour import create_user


def test_first_start_says_where_to_go_and_how_to_make_an_admin(live_server):
    server = live_server()
    log = server.log_text()
    assert f"open http://127.0.0.1:{server.port}/ in a browser" in log
    assert "python run.py create-user --username NAME --role admin" in log
    assert "normal on a first start" in log
    assert "ignored" not in log and "cannot" not in log
    create_user(server, "boss", "admin")
    server.stop()
    again = server.start()
    later = again.log_text().split("stopped")[-1]  # the same log file: only the second start
    assert f"open http://127.0.0.1:{server.port}/ in a browser" in later
    assert "create-user" not in later
