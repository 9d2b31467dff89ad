"""`flask seed-orders`: realistic fake orders produced to Kafka, keyed by order_uid."""

import random
import time
from pathlib import Path

import click
from flask import current_app
from flask.cli import with_appcontext
from kafka import KafkaProducer
from kafka.errors import KafkaError, KafkaTimeoutError
from opentelemetry import trace
from opentelemetry.propagate import inject
from opentelemetry.trace import SpanKind
from tqdm import tqdm

from app.kafka_clients import COMMAND_KAFKA_WAIT_S, KafkaSettings, new_producer, unreachable_message
from app.kafka_health import refusal
from app.seed import OrderFactory, encode, invalid_record
from app.tracing import flush_tracing, start_tracing

_tracer = trace.get_tracer("app.cli.seed")


def _producer(settings: KafkaSettings, topic: str, wait_s: float) -> KafkaProducer:
    producer = new_producer(
        settings,
        acks="all",
        linger_ms=20,
        batch_size=256 * 1024,
        max_request_size=3 * 1024 * 1024,
        max_block_ms=int(wait_s * 1000),
    )
    # Fetching the topic's metadata proves the broker answers before anything is generated.
    if not producer.partitions_for(topic):
        raise KafkaTimeoutError(f"topic {topic} has no partitions")
    return producer


@click.command("seed-orders")
@click.option("--count", type=click.IntRange(min=1), default=1000, show_default=True,
              help="How many records to produce.")
@click.option("--rate", type=click.FloatRange(min=0), default=0, show_default=True,
              help="Records per second; 0 means as fast as possible.")
@click.option("--seed", type=int, default=None, help="Make the run reproducible.")
@click.option("--invalid-ratio", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Share of records that break the contract (they go to the dead-letter topic).")
@click.option("--duplicate-ratio", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Share of records that repeat an earlier order byte for byte.")
@click.option("--min-items", type=click.IntRange(1, 1000), default=1, show_default=True)
@click.option("--max-items", type=click.IntRange(1, 1000), default=20, show_default=True)
@click.option("--ids-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the order_uid of every distinct valid order produced, one per line "
                   "(once every record is sent).")
@click.option("--topic", default=None, help="Defaults to KAFKA_TOPIC.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--kafka-wait", type=click.FloatRange(0.1, 300), default=COMMAND_KAFKA_WAIT_S,
              show_default=True, help="Seconds to wait for Kafka, at the start and for room in the "
                                      "producer's buffer while sending, before giving up.")
@with_appcontext
def seed_orders(count, rate, seed, invalid_ratio, duplicate_ratio, min_items, max_items, ids_file,
                topic, quiet, kafka_wait):
    """Produce realistic fake orders (consistent totals, varied items, locales, currencies)."""
    if min_items > max_items:
        raise click.BadParameter("--min-items must not exceed --max-items")
    if invalid_ratio + duplicate_ratio > 1:
        raise click.BadParameter("--invalid-ratio and --duplicate-ratio add up to more than 1")
    kafka = KafkaSettings.from_config(current_app.config)
    topic = topic or current_app.config["KAFKA_TOPIC"]
    try:
        producer = _producer(kafka, topic, kafka_wait)
    except KafkaError as exc:
        raise click.ClickException(refusal(kafka, (topic,)) or unreachable_message(kafka, exc)) from None

    # With tracing on, each record gets a producer span and carries its `traceparent`; off, no
    # header (a made-up one would link the consumer's spans to traces that exist nowhere).
    traced = start_tracing()
    factory = OrderFactory(seed)
    rng = random.Random(seed)
    counts = {"valid": 0, "invalid": 0, "duplicate": 0}
    sent_valid: list[tuple[bytes, bytes]] = []
    ids: list[str] = []
    failures: list[BaseException] = []
    started = time.monotonic()
    with tqdm(total=count, unit="order", disable=quiet, mininterval=0.5) as progress:
        for index in range(count):
            if rate:
                # Pacing, so that --rate holds over the run and not just on average.
                delay = started + index / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            kind, key, value = _next_record(factory, rng, invalid_ratio, duplicate_ratio, sent_valid,
                                            min_items, max_items)
            counts[kind] += 1
            if kind == "valid":
                sent_valid.append((key, value))
                ids.append(key.decode())
            try:
                future = _send(producer, topic, key, value, traced)
            except KafkaError as exc:  # no room in the buffer within --kafka-wait: the broker went away
                producer.close(timeout=0)
                raise click.ClickException(f"sending stopped at record {index + 1:,} of {count:,}: "
                                           + unreachable_message(kafka, exc)) from None
            future.add_errback(failures.append)
            progress.update(1)
        producer.flush()
    producer.close()
    flush_tracing()
    elapsed = time.monotonic() - started
    if ids_file:
        ids_file.write_text("".join(f"{uid}\n" for uid in ids))
    click.echo(
        f"produced {count} records to {topic} in {elapsed:.1f} s ({count / elapsed:.0f}/s): "
        f"{counts['valid']} valid, {counts['duplicate']} duplicates, {counts['invalid']} invalid"
        + (f"; ids in {ids_file}" if ids_file else "")
    )
    if failures:
        raise click.ClickException(
            f"{len(failures)} records were not acknowledged by Kafka (first: {failures[0]!r}); "
            "check the broker's log and run again."
        )


def _send(producer: KafkaProducer, topic: str, key: bytes, value: bytes, traced: bool):
    if not traced:
        return producer.send(topic, key=key, value=value)
    with _tracer.start_as_current_span(f"{topic} send", kind=SpanKind.PRODUCER,
                                       attributes={"messaging.system": "kafka",
                                                   "messaging.destination.name": topic}):
        carrier: dict[str, str] = {}
        inject(carrier)
        headers = [(name, text.encode()) for name, text in carrier.items()]
        return producer.send(topic, key=key, value=value, headers=headers)


def _next_record(factory, rng, invalid_ratio, duplicate_ratio, sent_valid, min_items, max_items):
    draw = rng.random()
    if draw < duplicate_ratio and sent_valid:
        key, value = rng.choice(sent_valid)
        return "duplicate", key, value
    order = factory.order(min_items=min_items, max_items=max_items)
    key = order["order_uid"].encode()
    if draw < duplicate_ratio + invalid_ratio:
        _, value = invalid_record(rng, order)
        return "invalid", key, value
    return "valid", key, encode(order)

