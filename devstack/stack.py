"""The registry of services, and the three commands over all of them."""

import os

from config import private_dir
from devstack.kafka import Kafka
from devstack.keycloak import Keycloak
from devstack.nginx import Nginx
from devstack.postgres import Postgres
from devstack.process import home_lock
from devstack.settings import Settings

# One line per service: launched and readied in this order, stopped in the reverse one.
SERVICES = (
    Postgres,
    Kafka,
    Nginx,
    Keycloak,
)


def _prepare_home(settings: Settings) -> None:
    """The home and its logs: never a symlink or someone else's. The home's mode is PostgreSQL's
    business (devstack/postgres.py: the server's user may have to pass through it)."""
    os.makedirs(settings.home.parent, exist_ok=True)
    private_dir(settings.home, mode=None)
    private_dir(settings.logs)


def up(settings: Settings) -> int:
    """Start what is missing and reuse what runs. Every service's directories are checked before
    anything starts; every service is launched (a JVM boots while PostgreSQL starts), then each is
    waited for and set up."""
    _prepare_home(settings)
    with home_lock(settings.home / "infra.lock"):
        services = [service(settings) for service in SERVICES]
        for service in services:
            service.prepare()
        for service in services:
            service.launch()
        for service in services:
            service.ready()
    return 0


def down(settings: Settings) -> int:
    """Stop what `up` started here; never a server it did not start."""
    _prepare_home(settings)
    with home_lock(settings.home / "infra.lock"):
        for service in reversed([service(settings) for service in SERVICES]):
            service.down()
    return 0


def status(settings: Settings) -> int:
    """One line per service; 0 when all are up, 3 otherwise."""
    statuses = [(service.name, service(settings).status()) for service in SERVICES]
    for name, state in statuses:
        print(state.line(name))
    return 0 if all(state.up for _, state in statuses) else 3
