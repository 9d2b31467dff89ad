"""Render the edge's nginx.conf from infra/nginx/nginx.conf.template and config.py's settings.

    python scripts/render_nginx.py --prefix DIR [--cache-dir DIR]

writes DIR/nginx.conf and creates DIR/logs, DIR/run and the cache and temp dirs (tmpfs is
best for the cache: every miss writes a file). Start it with `nginx -p DIR -c DIR/nginx.conf`.
Used by scripts/infra.sh, the tests and docker-compose, so all three run the same edge.

Every value is checked before it goes into the file: a setting is never a way to inject nginx
directives.
"""

import argparse
import ipaddress
import os
import pwd
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

try:
    from config import Config  # noqa: E402  (a setting out of its range stops the import)
except ValueError as exc:
    sys.exit(f"render_nginx: {exc}")

from app.errors import RETRY_AFTER_S  # noqa: E402

TEMPLATE = ROOT / "infra" / "nginx" / "nginx.conf.template"
PLACEHOLDER = re.compile(r"\$\{([A-Z][A-Z0-9_]*)\}")
# When nginx starts as root, its workers (the part that talks to clients) run as this user.
WORKER_USER = "www-data"


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
    rules = []
    for entry in re.split(r"[\s,]+", value.strip()):
        if entry:
            try:
                network = ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"METRICS_ALLOW: {entry!r} is not an address or CIDR range") from None
            rules.append(f"            allow {network};")
    return "\n".join(rules)


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
    }


def render(template: str, substitutions: dict[str, str]) -> str:
    unknown = sorted(set(PLACEHOLDER.findall(template)) - set(substitutions))
    if unknown:
        raise ValueError(f"the template names settings this script does not know: {', '.join(unknown)}")
    return PLACEHOLDER.sub(lambda match: substitutions[match.group(1)], template)


def prepare_dirs(prefix: Path, cache_dir: Path) -> None:
    """Logs and the pid file are written by the master; the cache and temp files by the workers,
    which run as WORKER_USER when the master is root."""
    for path in (prefix / "logs", prefix / "run"):
        path.mkdir(parents=True, exist_ok=True)
    for path in (cache_dir, cache_dir / "orders", cache_dir / "temp"):
        path.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            user = pwd.getpwnam(WORKER_USER)
            os.chown(path, user.pw_uid, user.pw_gid)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--prefix", type=Path, required=True, help="nginx.conf, logs/ and run/ go here")
    parser.add_argument("--cache-dir", type=Path,
                        help="cache and temp files (default: EDGE_CACHE_DIR, else PREFIX/cache)")
    args = parser.parse_args()
    prefix = args.prefix.resolve()
    cache_dir = (args.cache_dir or Path(Config.EDGE_CACHE_DIR or prefix / "cache")).resolve()
    try:
        text = render(TEMPLATE.read_text(), values(Config, prefix, cache_dir))
    except ValueError as exc:
        sys.exit(f"render_nginx: {exc}")
    prepare_dirs(prefix, cache_dir)
    target = prefix / "nginx.conf"
    tmp = target.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(target)
    print(target)


if __name__ == "__main__":
    main()
