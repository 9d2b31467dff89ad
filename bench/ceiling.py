"""The read ceiling: a bare WSGI app that answers every request with the same order bytes, run under
the service's own gunicorn settings (bench/ceiling.conf.py)."""

import os
from pathlib import Path

_BODY = Path(os.environ["BENCH_CEILING_BODY"]).read_bytes()
_HEADERS = [("Content-Type", "application/json"), ("Content-Length", str(len(_BODY)))]


def app(environ, start_response):
    start_response("200 OK", _HEADERS)
    return [_BODY]
