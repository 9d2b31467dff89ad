"""The consumer's spans: one per batch, linked to the trace of every record that carried a W3C
`traceparent` header, with a child span per step. With tracing off (no provider: see app/tracing.py)
the tracer is the API's no-op one and no header is read."""

from collections.abc import Iterable
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Link, SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

TRACEPARENT = "traceparent"
# A batch links to at most this many records' traces (the SDK's default span link limit,
# OTEL_SPAN_LINK_COUNT_LIMIT, is the same): a batch of 500 traced records stays one readable span.
MAX_BATCH_LINKS = 128
# A W3C traceparent is 55 bytes (version 00); later versions may append fields. A longer header (a
# record can carry megabytes in one) is neither linked nor kept in a dead letter.
MAX_TRACEPARENT_BYTES = 256

tracer = trace.get_tracer("app.ingest")
_propagator = TraceContextTextMapPropagator()


def traceparent_of(record: Any) -> bytes | None:
    """The record's traceparent header as it came (the last one, if it came twice); None when it
    is longer than MAX_TRACEPARENT_BYTES, as no traceparent is."""
    found = None
    for name, value in record.headers:
        if name == TRACEPARENT:
            found = value
    return found if found is not None and len(found) <= MAX_TRACEPARENT_BYTES else None


def record_links(records: Iterable[Any]) -> list[Link]:
    """A link to each record's valid traceparent context, at most MAX_BATCH_LINKS of them."""
    links: list[Link] = []
    for record in records:
        raw = traceparent_of(record)
        if raw is None:
            continue
        try:
            carrier = {TRACEPARENT: raw.decode("ascii")}
        except UnicodeDecodeError:
            continue
        context = trace.get_current_span(_propagator.extract(carrier)).get_span_context()
        if context.is_valid:
            links.append(Link(context, {"messaging.kafka.offset": record.offset,
                                        "messaging.destination.partition.id": str(record.partition)}))
            if len(links) == MAX_BATCH_LINKS:
                break
    return links


def start_batch_span(topic: str, started_ns: int | None) -> Any:
    """The batch's span (not yet current); it starts when its poll did."""
    return tracer.start_span(f"{topic} process", kind=SpanKind.CONSUMER, start_time=started_ns,
                             attributes={"messaging.system": "kafka",
                                         "messaging.operation.type": "process",
                                         "messaging.destination.name": topic})
