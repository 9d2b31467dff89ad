"""The app's access-log line: one line per request, whatever the client put in its path."""

import re

from app.logs import write_access_line


def test_a_line_carries_the_request_and_its_id(capfd):
    write_access_line("10.0.0.1", "GET", "/order/abc", "404", "req-1")
    err = capfd.readouterr().err
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO \[\d+ [^\]]+\] order_service\.access: "
                        r'10\.0\.0\.1 "GET /order/abc" 404 request_id=req-1\n', err)


def test_a_path_cannot_forge_a_line_of_its_own(capfd):
    write_access_line("10.0.0.1", "GET", "/x\n2026-01-01 00:00:00,000 INFO fake\r", "404", "req-2")
    err = capfd.readouterr().err
    assert err.count("\n") == 1 and "\\n2026-01-01" in err and "request_id=req-2" in err
