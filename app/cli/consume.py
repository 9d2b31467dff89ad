"""`flask consume`: the Kafka consumer in the foreground, for development next to `flask run`
(gunicorn runs one in every worker by itself)."""

import signal
import threading

import click
from flask import current_app
from flask.cli import with_appcontext

from app.ingest import cache_write_through
from app.ingest.consumer import OrderConsumer


@click.command("consume")
@with_appcontext
def consume():
    """Consume KAFKA_TOPIC until SIGINT/SIGTERM, then commit, leave the group and exit."""
    app = current_app._get_current_object()
    consumer = OrderConsumer(app, on_stored=cache_write_through(app))
    worker = threading.Thread(target=consumer.run, name="order-consumer")

    def stop(signum, _frame):
        click.echo(f"{signal.Signals(signum).name}: finishing the current batch, then leaving the group")
        consumer.stop()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    click.echo(f"consuming {app.config['KAFKA_TOPIC']} as group {app.config['KAFKA_GROUP_ID']}; "
               "Ctrl-C to stop")
    worker.start()
    while worker.is_alive():
        worker.join(timeout=0.5)
