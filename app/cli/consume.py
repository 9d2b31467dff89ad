"""`flask consume`: the Kafka consumer in the foreground, for development next to `flask run`
(gunicorn runs one in every worker by itself)."""

import signal

import click
from flask import current_app
from flask.cli import with_appcontext

from app.ingest import ConsumerRuntime
from app.tracing import flush_tracing, start_tracing


@click.command("consume")
@with_appcontext
def consume():
    """Consume KAFKA_TOPIC until SIGINT/SIGTERM, then commit, leave the group and exit."""
    app = current_app._get_current_object()
    runtime = ConsumerRuntime()

    def stop(signum, _frame):
        click.echo(f"{signal.Signals(signum).name}: finishing the current batch, then leaving the group")
        runtime.stop()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    click.echo(f"consuming {app.config['KAFKA_TOPIC']} as group {app.config['KAFKA_GROUP_ID']}; "
               "Ctrl-C to stop")
    start_tracing()
    runtime.start().attach(app)
    # Signals reach the main thread only between joins: join in short steps.
    while runtime.thread.is_alive():
        runtime.thread.join(timeout=0.5)
    flush_tracing()
