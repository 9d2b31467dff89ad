"""Render the edge's nginx.conf from infra/nginx/nginx.conf.template and config.py's settings.

    python -m devstack.edge_config --prefix DIR [--cache-dir DIR]

writes DIR/nginx.conf and creates DIR/logs, DIR/run and the cache and temp dirs (tmpfs is
best for the cache: every miss writes a file), each a private directory (config.private_dir:
never a symlink, never someone else's). Start it with `nginx -p DIR -c DIR/nginx.conf`.
Used by `make infra` (devstack/nginx.py), the tests and docker-compose, so all three run the same
edge. It needs config.py and app/ only, not the rest of devstack (the service image runs it).

Every value is checked before it goes into the file: a setting is never a way to inject nginx
directives.
"""

import argparse
import os
import pwd
import re
import sys
from pathlib import Path

try:  # config checks every setting's range as it loads: a wrong one is one line, not a traceback
    from config import Config, private_dir
except ValueError as exc:
    sys.exit(f"edge_config: {exc}")

from app.errors import RETRY_AFTER_S  # noqa: E402
from app.security import allowed_networks  # noqa: E402
from devstack.template import render  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "infra" / "nginx" / "nginx.conf.template"
# When nginx starts as root, its workers (the part that talks to clients) run as this unprivileged
# user; they alone write the cache.
WORKER_USER = "www-data"
# Debian's dynamic modules (set-misc and ndk: libnginx-mod-http-set-misc).
MODULES_DIR = "/usr/lib/nginx/modules"
SET_MISC_MODULE = f"{MODULES_DIR}/ngx_http_set_misc_module.so"
# The keys zone of the token checks' cache: 1 MiB holds about 8,000 tokens.
AUTH_KEYS_MB = 4
# GET /order/<id> asks the app about the token first (auth_request) and keeps the answer's form;
# with authentication off every caller reads the full form.
ORDER_ACCESS_CHECK = """\
            auth_request /_auth/order;
            auth_request_set $order_view $upstream_http_x_order_view;
            auth_request_set $auth_subject $upstream_http_x_auth_subject;
            auth_request_set $auth_client $upstream_http_x_auth_client;
            auth_request_set $auth_scopes $upstream_http_x_auth_scopes;
            auth_request_set $auth_error $upstream_http_x_auth_error;
            auth_request_set $auth_message $upstream_http_x_auth_message;
            auth_request_set $auth_challenge $upstream_http_www_authenticate;"""
NO_ACCESS_CHECK = """\
            set $order_view full;
            set $auth_subject "";
            set $auth_client "";
            set $auth_scopes "";
            set $auth_error "";
            set $auth_message "";
            set $auth_challenge "";"""


def _positive(name: str, value: int) -> int:
    if value <= 0:
        raise ValueError(f"{name}={value} must be a positive whole number")
    return value


def _path(name: str, value: str) -> str:
    if not value.startswith("/") or re.search(r"[\s;{}'\"$#]", value):
        raise ValueError(f"{name}={value!r} must be an absolute path without spaces, quotes or ;{{}}$#")
    return value


def _address(name: str, value: str) -> str:
    """host:port, [v6]:port or unix:/path, as both gunicorn and nginx write them."""
    if value.startswith("unix:"):
        return "unix:" + _path(name, value[len("unix:"):])
    match = re.fullmatch(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})", value)
    if not match or not 0 < int(match.group(2)) < 65536:
        raise ValueError(f"{name}={value!r} must be host:port or unix:/path")
    return value


def metrics_allow_rules(value: str) -> str:
    return "\n".join(f"            allow {network};" for network in allowed_networks(value))


def values(config: type, prefix: Path, cache_dir: Path) -> dict[str, str]:
    """What each placeholder becomes."""
    listen_host = config.HOST if ":" not in config.HOST else f"[{config.HOST}]"
    connections = _positive("EDGE_WORKER_CONNECTIONS", config.EDGE_WORKER_CONNECTIONS)
    return {
        "USER_DIRECTIVE": f"user {WORKER_USER};" if os.geteuid() == 0 else "",
        # A proxied request holds two descriptors: the client's and the upstream's.
        "WORKER_RLIMIT_NOFILE": str(2 * connections + 64),
        "WORKER_CONNECTIONS": str(connections),
        "RUN_DIR": _path("prefix", str(prefix / "run")),
        "LOG_DIR": _path("prefix", str(prefix / "logs")),
        "TEMP_DIR": _path("cache dir", str(cache_dir / "temp")),
        "CACHE_DIR": _path("cache dir", str(cache_dir / "orders")),
        "REQUEST_ID_PATTERN": config.REQUEST_ID_PATTERN,
        "CLIENT_TIMEOUT_S": str(_positive("EDGE_CLIENT_TIMEOUT_S", config.EDGE_CLIENT_TIMEOUT_S)),
        "MAX_HEADER_BYTES": str(_positive("EDGE_MAX_HEADER_BYTES", config.EDGE_MAX_HEADER_BYTES)),
        "CACHE_KEYS_MB": str(_positive("EDGE_CACHE_KEYS_MB", config.EDGE_CACHE_KEYS_MB)),
        "CACHE_MAX_MB": str(_positive("EDGE_CACHE_MAX_MB", config.EDGE_CACHE_MAX_MB)),
        "CACHE_INACTIVE_S": str(_positive("CACHE_TTL", config.CACHE_TTL)),
        "CACHE_MISS_TTL": str(max(0, config.CACHE_MISS_TTL)),
        "APP_UPSTREAM": _address("APP_BIND", config.APP_BIND),
        "UPSTREAM_KEEPALIVE_S": str(max(1, config.GUNICORN_KEEPALIVE_S - 1)),
        "LISTEN": _address("HOST:PORT", f"{listen_host}:{config.PORT}"),
        "METRICS_ALLOW_RULES": metrics_allow_rules(config.METRICS_ALLOW),
        "RETRY_AFTER_S": str(RETRY_AFTER_S),
        "MODULES_DIR": MODULES_DIR,
        "AUTH_CACHE_DIR": _path("cache dir", str(cache_dir / "token-checks")),
        # Where nginx's workers can reach it (they run as WORKER_USER when the master is root).
        "MISSES_SOCKET": _path("cache dir", str(misses_socket(cache_dir))),
        "AUTH_KEYS_MB": str(AUTH_KEYS_MB),
        "AUTH_EDGE_CACHE_S": str(_positive("AUTH_EDGE_CACHE_S", config.AUTH_EDGE_CACHE_S)),
        "ORDER_ACCESS_CHECK": ORDER_ACCESS_CHECK if config.AUTH_ENABLED else NO_ACCESS_CHECK,
        "LOOKUP_RATE": str(_positive("EDGE_LOOKUP_RATE", config.EDGE_LOOKUP_RATE)),
        "LOOKUP_BURST": str(_positive("EDGE_LOOKUP_BURST", config.EDGE_LOOKUP_BURST)),
    }


def misses_socket(cache_dir: Path) -> Path:
    """The unix socket of the edge's inner server for requests that pass its caches (rate-limited
    there), where nginx's workers can reach it."""
    return cache_dir / "temp" / "order-misses.sock"


def prepare_dirs(prefix: Path, cache_dir: Path) -> None:
    """Logs and the pid file are written by the master; the cache and temp files by the workers,
    which run as WORKER_USER when the master is root. Every one is private: the cache holds
    customers' orders, and a planted symlink must not lead our files (or, as root, a chown)
    elsewhere."""
    for path in (prefix, prefix / "logs", prefix / "run"):
        private_dir(path)
    # Orders (personal data) and the token checks: for nginx's workers only.
    worker_dirs = (cache_dir / "orders", cache_dir / "token-checks", cache_dir / "temp")
    if os.geteuid() != 0:
        for path in (cache_dir, *worker_dirs):
            private_dir(path)
        return
    worker = pwd.getpwnam(WORKER_USER)
    # The workers pass through the cache dir (0750, their group); an older version gave it to them.
    private_dir(cache_dir, 0o750, group=worker.pw_gid, also_owned_by=(worker.pw_uid,))
    for path in worker_dirs:
        private_dir(path, owner=worker.pw_uid, group=worker.pw_gid)


def write_config(config: type, prefix: Path, cache_dir: Path) -> Path:
    """Render PREFIX/nginx.conf and prepare its directories; raises ValueError for a bad setting
    (before anything is written) and PermissionError for an unsafe directory."""
    text = render(TEMPLATE.read_text(), values(config, prefix, cache_dir))
    prepare_dirs(prefix, cache_dir)
    target = prefix / "nginx.conf"
    tmp = target.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(target)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--prefix", type=Path, required=True, help="nginx.conf, logs/ and run/ go here")
    parser.add_argument("--cache-dir", type=Path,
                        help="cache and temp files (default: EDGE_CACHE_DIR, else PREFIX/cache)")
    args = parser.parse_args()
    # Absolute, not resolved: a symlink on the way is refused, never followed.
    prefix = args.prefix.absolute()
    cache_dir = (args.cache_dir or Path(Config.EDGE_CACHE_DIR or prefix / "cache")).absolute()
    try:
        print(write_config(Config, prefix, cache_dir))
    except (ValueError, PermissionError) as exc:
        sys.exit(f"edge_config: {exc}")


if __name__ == "__main__":
    main()
