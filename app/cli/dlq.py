"""`flask dlq stats|show|replay`: the dead-letter topic (KAFKA_DLQ_TOPIC) read to its end, once per
source record, and replayed to KAFKA_TOPIC. The logic lives in app/dlq/."""

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click
from flask import current_app
from flask.cli import with_appcontext
from kafka import KafkaConsumer
from tqdm import tqdm

from app.dlq.records import DeadLetter
from app.dlq.replay import REPLAY_GROUP_SUFFIX, Outcome, Plan, make_plan, read_ledgers, replay
from app.dlq.summary import Stats, collect_stats, iso_time, select_letters
from app.dlq.topic import DlqError, new_consumer, read_records, topic_partitions
from app.ingest.records import ErrorType
from app.kafka_clients import KafkaSettings

EXIT_CODES = """\b
Exit codes: 0 done; 1 Kafka unreachable, a topic missing or the topic not
readable to its end; 2 bad usage; 3 (replay) some dead letters were not
acknowledged by the broker: they are not remembered, run again."""

ERROR_TYPES = sorted(error_type.value for error_type in ErrorType)


class ReplayIncomplete(click.ClickException):
    exit_code = 3


def _config() -> dict[str, Any]:
    return current_app.config


def _kafka() -> KafkaSettings:
    return KafkaSettings.from_config(current_app.config)


@contextmanager
def _kafka_errors() -> Iterator[None]:
    try:
        yield
    except DlqError as exc:
        raise click.ClickException(str(exc)) from None


def _dlq_partitions(*also: tuple[str, str]) -> dict[str, list[int]]:
    config = _config()
    topics = {config["KAFKA_DLQ_TOPIC"]: "KAFKA_DLQ_TOPIC"} | dict(also)
    return topic_partitions(_kafka(), topics)


def _read_letters(consumer: KafkaConsumer, partitions: list[int]) -> Iterator[DeadLetter]:
    for record in read_records(_kafka(), consumer, _config()["KAFKA_DLQ_TOPIC"], partitions):
        yield DeadLetter.from_record(record)


@contextmanager
def _all_letters() -> Iterator[Iterator[DeadLetter]]:
    """Every dead letter of KAFKA_DLQ_TOPIC up to its end now, read without a group (stats, show)."""
    with _kafka_errors():
        partitions = _dlq_partitions()[_config()["KAFKA_DLQ_TOPIC"]]
        with _consumer() as consumer:
            yield _read_letters(consumer, partitions)


@contextmanager
def _consumer(group_id: str | None = None) -> Iterator[KafkaConsumer]:
    consumer = new_consumer(_kafka(), group_id)
    try:
        yield consumer
    finally:
        consumer.close(autocommit=False)


@click.group("dlq", epilog=EXIT_CODES)
def dlq() -> None:
    """Read and replay the dead-letter topic (KAFKA_DLQ_TOPIC). A dead letter is delivered at
    least once: every command counts it once per source record (dlq.source.topic, .partition,
    .offset)."""


type_option = click.option("--type", "error_type", type=click.Choice(ERROR_TYPES),
                           help="Only dead letters of this dlq.error.type.")
key_option = click.option("--key", default=None, help="Only dead letters with this record key (UTF-8).")


@dlq.command("stats", epilog=EXIT_CODES)
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of text.")
@with_appcontext
def stats_command(as_json: bool) -> None:
    """Dead letters by dlq.error.type, oldest and newest, extra copies counted apart."""
    with _all_letters() as letters:
        stats = collect_stats(letters)
    if as_json:
        click.echo(json.dumps(stats.as_json()))
    else:
        _print_stats(_config()["KAFKA_DLQ_TOPIC"], stats)


def _print_stats(topic: str, stats: Stats) -> None:
    if not stats.records:
        click.echo(f"{topic}: no dead letters")
        return
    click.echo(f"{topic}: {stats.records} dead letters, {sum(stats.by_type.values())} source records, "
               f"{stats.duplicates} duplicates (copies of the same dlq.source.topic/partition/offset)")
    width = max(len("error type"), *(len(label) for label in stats.by_type | stats.duplicates_by_type))
    click.echo(f"  {'error type':<{width}}  source records  duplicates")
    for label in sorted(stats.by_type | stats.duplicates_by_type):
        click.echo(f"  {label:<{width}}  {stats.by_type[label]:>14}  {stats.duplicates_by_type[label]:>10}")
    if stats.without_source:
        click.echo(f"  without source coordinates (each counted as its own source): {stats.without_source}")
    for name, letter in (("oldest", stats.oldest), ("newest", stats.newest)):
        click.echo(f"{name}: {iso_time(letter.timestamp_ms)} "
                   f"(partition {letter.dlq_partition}, offset {letter.dlq_offset})")


@dlq.command("show", epilog=EXIT_CODES)
@type_option
@key_option
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True,
              help="How many source records to show, oldest first.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line instead of text.")
@with_appcontext
def show_command(error_type: str | None, key: str | None, limit: int, as_json: bool) -> None:
    """Dead letters, oldest first, once per source record: source coordinates, error type,
    detail, key and the start of the value. Every byte is shown escaped (invalid UTF-8 and
    control characters as \\xNN, \\uNNNN), so nothing in a record can act on the terminal."""
    with _all_letters() as letters:
        entries, matched = select_letters(letters, error_type, None if key is None else key.encode(), limit)
    for entry in entries:
        click.echo(json.dumps(entry) if as_json else _shown_text(entry))
    if not as_json:
        click.echo(f"{len(entries)} of {matched} matching source records shown")


def _shown_text(entry: dict[str, Any]) -> str:
    source = entry["source"]
    where = "(no source coordinates)" if source is None else \
        f"{source['topic']}/{source['partition']}/{source['offset']}"
    copies = f", {entry['copies']} copies" if entry["copies"] > 1 else ""
    size = "" if entry["value_bytes"] is None else f" ({entry['value_bytes']} bytes)"
    return (f"{where}  {entry['error_type']}  {entry['time']}  "
            f"(dead letter {entry['dlq_partition']}/{entry['dlq_offset']}{copies})\n"
            f"  key:    {entry['key']}\n"
            f"  detail: {entry['detail']}\n"
            f"  value:  {entry['value_start']}{size}\n")


@dlq.command("replay", epilog=EXIT_CODES)
@type_option
@key_option
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="Replay at most this many source records; the rest are left for a later run.")
@click.option("--dry-run", is_flag=True, help="Say what would be replayed; send and remember nothing.")
@click.option("--again", is_flag=True,
              help="Also replay dead letters whose key and value were replayed before (they came back).")
@with_appcontext
def replay_command(error_type: str | None, key: str | None, limit: int | None, dry_run: bool,
                   again: bool) -> None:
    """Produce dead letters' original key and value back to KAFKA_TOPIC, with a dlq.replayed.from
    header (source topic/partition/offset), once per source record. What was replayed is
    remembered in the consumer group KAFKA_GROUP_ID + "-dlq-replay" (committed once the broker
    has acknowledged the replays), so a second run replays only what is new. Run one replay at a
    time."""
    config = _config()
    dlq_topic, target = config["KAFKA_DLQ_TOPIC"], config["KAFKA_TOPIC"]
    group = config["KAFKA_GROUP_ID"] + REPLAY_GROUP_SUFFIX
    if target == dlq_topic:
        raise click.UsageError(f"KAFKA_TOPIC and KAFKA_DLQ_TOPIC are both {target}: replaying would write "
                               "dead letters into the dead-letter topic itself")
    with _kafka_errors():
        partitions = _dlq_partitions((target, "KAFKA_TOPIC"))[dlq_topic]
        with _consumer(group) as consumer:
            ledgers = read_ledgers(_kafka(), consumer, dlq_topic, partitions)
            plan = make_plan(_read_letters(consumer, partitions), ledgers, error_type,
                             None if key is None else key.encode(), limit, again)
            if dry_run:
                _print_plan(plan, dlq_topic, target)
                return
            with tqdm(total=len(plan.to_replay), unit="record", disable=None, mininterval=0.5) as bar:
                outcome = replay(_kafka(), consumer, dlq_topic, target, plan, ledgers, _ticker(bar))
    _print_outcome(plan, outcome, target)


def _ticker(bar: tqdm) -> Callable[[], None]:
    return lambda: bar.update(1)


def _by_type(counts: dict[str, int]) -> str:
    return ", ".join(f"{label} {count}" for label, count in sorted(counts.items())) or "none"


def _print_plan(plan: Plan, dlq_topic: str, target: str) -> None:
    types: dict[str, int] = {}
    for entry in plan.to_replay.values():
        types[entry.error_type_label] = types.get(entry.error_type_label, 0) + 1
    click.echo(f"dry run: would replay {len(plan.to_replay)} dead letters from {dlq_topic} to {target} "
               f"({_by_type(types)}); nothing sent, nothing remembered")
    _print_skipped(plan)


def _print_skipped(plan: Plan) -> None:
    for reason, count in sorted(plan.skipped.items()):
        click.echo(f"  not replayed: {count} {reason}")


def _print_outcome(plan: Plan, outcome: Outcome, target: str) -> None:
    replayed = sum(outcome.acknowledged.values())
    click.echo(f"replayed {replayed} of {len(plan.to_replay)} dead letters to {target}, acknowledged "
               f"by the broker ({_by_type(outcome.acknowledged)})")
    _print_skipped(plan)
    if outcome.forgotten:
        click.echo(f"  warning: {outcome.forgotten} replayed dead letters could not be remembered "
                   "(too many gaps left by filters); a later run may replay them again")
    if outcome.failures:
        shown = "\n  ".join(outcome.failures[:10])
        more = f"\n  … and {len(outcome.failures) - 10} more" if len(outcome.failures) > 10 else ""
        raise ReplayIncomplete(f"{len(plan.to_replay) - replayed} dead letters were not replayed and are "
                               f"not remembered; run again:\n  {shown}{more}")
