"""`flask backfill-bodies`: each order's served bytes stored beside its rows, for the orders stored
before migration 0002 (until then they are served from their rows, as before)."""

import time

import click
from flask import Flask, current_app
from flask.cli import with_appcontext
from tqdm import tqdm

from app.data.backfill import backfill_bodies, orders_without_body


@click.command("backfill-bodies")
@click.option("--batch-size", type=click.IntRange(1, 10_000), default=1000, show_default=True,
              help="Orders per transaction.")
@click.option("--pause-ms", type=click.IntRange(min=0), default=0, show_default=True,
              help="Pause between batches, to leave PostgreSQL's disk to the service.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@with_appcontext
def backfill(batch_size: int, pause_ms: int, quiet: bool) -> None:
    """Store the served bytes of every order that has none yet. Online and resumable (run it
    again after an interruption); each order is checked against the hash taken at ingest. Runs as
    the owner (MIGRATION_DATABASE_URL), as migrations do."""
    with _as_owner().app_context():
        _backfill(batch_size, pause_ms, quiet)


def _as_owner() -> Flask:
    """The app on the owner's role: the backfill updates a column of stored orders, which the
    service's role (SELECT and INSERT only) may not."""
    from app import create_app

    config = current_app.config
    return create_app(overrides={**config, "SQLALCHEMY_DATABASE_URI": config["MIGRATION_DATABASE_URL"]})


def _backfill(batch_size: int, pause_ms: int, quiet: bool) -> None:
    total = orders_without_body()
    click.echo(f"{total:,} orders without stored bytes")
    mismatched: list[str] = []
    with tqdm(total=total, unit="order", disable=quiet or not total, mininterval=0.5) as progress:
        for batch in backfill_bodies(batch_size):
            mismatched += batch.mismatched
            progress.update(batch.filled + len(batch.mismatched))
            if pause_ms:
                time.sleep(pause_ms / 1000)
    filled = total - len(mismatched)
    click.echo(f"stored the bytes of {filled:,} orders")
    if mismatched:
        shown = ", ".join(mismatched[:10]) + (" …" if len(mismatched) > 10 else "")
        raise click.ClickException(
            f"{len(mismatched):,} orders were left as they were, because their rows no longer give back "
            f"the bytes hashed when they were stored ({shown}): they are still served from their rows. "
            "Compare those rows with the orders as produced (the dead-letter topic or the source) "
            "before changing anything.")
