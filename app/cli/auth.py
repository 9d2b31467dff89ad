"""`flask auth token --scope orders:read [--scope …]`: an access token from the provider, by the
client-credentials grant of AUTH_CLI_CLIENT_ID, printed alone on stdout for curl and scripts:

    curl -H "Authorization: Bearer $(flask auth token --scope orders:read)" localhost:8080/order/<id>
"""

import sys

import click
import requests
from flask import current_app
from flask.cli import AppGroup

from app.auth.policy import SCOPES
from app.auth.provider import Provider, ProviderUnavailable

auth = AppGroup("auth", help="Tokens from the OpenID Connect provider (AUTH_ISSUER).")


@auth.command("token")
@click.option("--scope", "scopes", multiple=True, type=click.Choice(sorted(SCOPES)), required=True,
              help="A scope to ask for; repeat for several (orders:read, orders:list, orders:pii).")
def token(scopes: tuple[str, ...]) -> None:
    """Print an access token for these scopes (client credentials of AUTH_CLI_CLIENT_ID)."""
    config = current_app.config
    if not config["AUTH_CLI_CLIENT_SECRET"]:
        fail("AUTH_CLI_CLIENT_SECRET is not set (nor AUTH_CLI_CLIENT_SECRET_FILE), and `make infra` has not "
             "made one: run `make infra`, or set it to your client's secret")
    provider = Provider(config["AUTH_ISSUER"], config["AUTH_PROVIDER_TIMEOUT_S"])
    try:
        response = requests.post(
            provider.token_endpoint(),
            data={"grant_type": "client_credentials", "scope": " ".join(scopes)},
            auth=(config["AUTH_CLI_CLIENT_ID"], config["AUTH_CLI_CLIENT_SECRET"]),
            timeout=config["AUTH_PROVIDER_TIMEOUT_S"])
    except (ProviderUnavailable, requests.RequestException) as exc:
        fail(f"the provider at {config['AUTH_ISSUER']} can't be reached ({exc}); "
             "is it running? (`make infra`)")
    if response.status_code != 200:
        fail(f"the provider refused: {response.status_code} {response.text[:300]}; check AUTH_CLI_CLIENT_ID "
             "and its secret, and that the client may have these scopes")
    body = response.json()
    granted = set(body.get("scope", "").split())
    if missing := set(scopes) - granted:
        fail(f"the provider did not grant {', '.join(sorted(missing))} to {config['AUTH_CLI_CLIENT_ID']}")
    click.echo(body["access_token"])


def fail(message: str) -> None:
    click.echo(f"flask auth token: {message}", err=True)
    sys.exit(1)
