"""The web page: a server-rendered view of the orders (Jinja, no JavaScript), next to the JSON API."""

from flask import Blueprint

bp = Blueprint(
    "web",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/web/static",
)

from app.web import routes  # noqa: E402,F401
