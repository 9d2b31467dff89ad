"""The web page: a server-rendered view of the orders (Jinja, no JavaScript), next to the JSON API."""

import hashlib
from functools import cache
from pathlib import Path
from typing import Any

from flask import Blueprint
from werkzeug.security import safe_join

bp = Blueprint(
    "web",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/web/static",
)


@cache
def static_version(filename: str) -> str:
    """A digest of the file's bytes: its URL changes when it does, so the edge can let browsers
    keep it for a year (infra/nginx/nginx.conf.template)."""
    path = safe_join(str(Path(__file__).parent / "static"), filename)
    if path is None or not Path(path).is_file():
        return ""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]


@bp.url_defaults
def _version_static_urls(endpoint: str, values: dict[str, Any]) -> None:
    wanted = endpoint == "web.static" and "v" not in values and values.get("filename")
    if wanted and (version := static_version(values["filename"])):
        values["v"] = version


from app.web import routes  # noqa: E402,F401
