"""Storing a batch's valid orders in PostgreSQL, and telling PostgreSQL's faults from the data's.

The orders go in one transaction. When PostgreSQL refuses it for the data's sake (a constraint, a
value out of range), or when it is slower than the statement timeout, the batch is split in halves
until the orders it refuses stand alone; an order that still times out on its own is an outage.

PostgreSQL raises the same errors for a bad order and for its own drift (a constraint, a trigger or
a migration ahead of the code, a missing partition): classified by error alone, a drifted database
would empty the stream into the dead-letter topic. So refusals are judged by pattern, a breaker:
an order PostgreSQL refuses is dead-lettered only when PostgreSQL stores the orders around it. At
BREAKER_THRESHOLD refusals in a row with no order stored between them, or when a batch's refusals
outnumber its stored orders, the sink stops: nothing of the batch is dead-lettered or committed,
the consumer waits as in an outage (/readyz, the orders_consumer_breaker_open metric and the log
name the constraint), and retries the batch until PostgreSQL takes it.
"""

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.exc import DataError, IntegrityError, OperationalError, SQLAlchemyError

from app.data.errors import first_line, timed_out
from app.data.store import SaveOutcome, save_orders
from app.documents import ServedOrder
from app.ingest.records import ErrorType, Rejection
from app.metrics import CONSUMER_BREAKER_OPEN

log = logging.getLogger(__name__)

Record = Any  # kafka.consumer.fetcher.ConsumerRecord

# Refusals in a row, with no order stored between them, that open the breaker.
BREAKER_THRESHOLD = 10


class Outage(Exception):
    """A dependency failed for a reason that is not the data's. `reason` is what /readyz shows (a
    fixed phrase, no details); the message, for the log, says more."""

    def __init__(self, message: str, reason: str, constraint: str | None = None) -> None:
        super().__init__(message)
        self.reason, self.constraint = reason, constraint


@dataclass
class BatchResult:
    stored: list[ServedOrder] = field(default_factory=list)
    duplicates: list[ServedOrder] = field(default_factory=list)
    dead_letters: list[tuple[Record, Rejection]] = field(default_factory=list)


def unprocessable(exc: Exception) -> Rejection:
    """What a record that made our own code fail is dead-lettered as."""
    return Rejection(ErrorType.UNPROCESSABLE, {"message": f"{exc.__class__.__name__}: {first_line(exc)}"})


class OrderSink:
    """Stores batches of validated orders for one consumer; its breaker lives across batches."""

    def __init__(self, threshold: int = BREAKER_THRESHOLD) -> None:
        self.threshold = threshold
        self.streak = 0  # refusals since PostgreSQL last stored an order
        self.open_on: str | None = None  # the constraint the breaker opened on

    def store(self, orders: Sequence[tuple[Record, ServedOrder]]) -> BatchResult:
        """Store the orders; raise Outage (dead-lettering nothing) when PostgreSQL is away, too slow
        for one order, or refuses them as a database at fault does."""
        result, refusals = BatchResult(), []
        try:
            self._store(list(orders), result, refusals)
        except _Tripped as tripped:
            self._open(tripped.refusal, tripped.reason)
        if refusals and len(refusals) > len(result.stored):
            self._open(refusals[-1], f"{len(refusals)} of the batch's {len(orders)} orders")
        if orders:
            self._close()
        result.dead_letters += [(refusal.record, refusal.rejection) for refusal in refusals]
        return result

    def _store(self, orders: list[tuple[Record, ServedOrder]], result: BatchResult, refusals: list) -> None:
        """Depth first, in the batch's order, so that `streak` counts refusals in a row."""
        if not orders:
            return
        try:
            outcomes = save_orders([order for _, order in orders])
        except (DataError, IntegrityError) as exc:
            if len(orders) == 1:
                return self._refused(_Refusal.of(orders[0][0], exc), refusals)
        except OperationalError as exc:
            if not timed_out(exc):
                raise Outage(f"PostgreSQL: {exc.__class__.__name__}: {first_line(exc)}",
                             "PostgreSQL is unavailable") from exc
            if len(orders) == 1:
                raise Outage(f"one order alone takes PostgreSQL longer than DB_STATEMENT_TIMEOUT_MS "
                             f"({first_line(exc)}); raise the timeout or look at the database's load",
                             "PostgreSQL is slower than DB_STATEMENT_TIMEOUT_MS for one order") from exc
            log.warning("storing %d orders took longer than DB_STATEMENT_TIMEOUT_MS: splitting them",
                        len(orders))
        except SQLAlchemyError as exc:
            raise Outage(f"PostgreSQL: {exc.__class__.__name__}: {first_line(exc)}",
                         "PostgreSQL is unavailable") from exc
        except Exception as exc:
            if len(orders) == 1:
                log.exception("storing an order failed; it is dead-lettered as unprocessable")
                result.dead_letters.append((orders[0][0], unprocessable(exc)))
                return None
        else:
            return self._record(orders, outcomes, result)
        middle = len(orders) // 2
        self._store(orders[:middle], result, refusals)
        self._store(orders[middle:], result, refusals)
        return None

    def _record(self, orders: list[tuple[Record, ServedOrder]], outcomes: list[SaveOutcome],
                result: BatchResult) -> None:
        for (record, order), outcome in zip(orders, outcomes, strict=True):
            if outcome is SaveOutcome.STORED:
                self.streak = 0
                result.stored.append(order)
            elif outcome is SaveOutcome.DUPLICATE:
                result.duplicates.append(order)
            else:
                detail = {"message": f"order {order.order_uid} is already stored with different content"}
                result.dead_letters.append((record, Rejection(ErrorType.CONFLICT, detail)))

    def _refused(self, refusal: "_Refusal", refusals: list) -> None:
        refusals.append(refusal)
        self.streak += 1
        if self.streak >= self.threshold:
            raise _Tripped(refusal, f"{self.streak} in a row")

    def _open(self, refusal: "_Refusal", how_many: str) -> None:
        """Open the breaker (or keep it open) and raise the Outage that makes the consumer wait."""
        self.streak = 0  # the retry counts afresh: PostgreSQL may take the orders by then
        if self.open_on != refusal.constraint:
            if self.open_on is not None:
                CONSUMER_BREAKER_OPEN.labels(self.open_on).set(0)
            CONSUMER_BREAKER_OPEN.labels(refusal.constraint).set(1)
            log.error("PostgreSQL refuses orders that passed validation (%s; %s: %s): none is "
                      "dead-lettered, the consumer waits and retries until PostgreSQL takes them. A "
                      "migration ahead of the code, a trigger or a missing partition does this.",
                      how_many, refusal.constraint, refusal.message)
            self.open_on = refusal.constraint
        raise Outage(f"PostgreSQL refuses orders that passed validation ({how_many}; {refusal.constraint}: "
                     f"{refusal.message})", "PostgreSQL refuses orders that passed validation",
                     refusal.constraint)

    def _close(self) -> None:
        if self.open_on is not None:
            log.warning("PostgreSQL takes the orders again (the breaker had opened on %s)", self.open_on)
            CONSUMER_BREAKER_OPEN.labels(self.open_on).set(0)
            self.open_on = None


@dataclass(frozen=True)
class _Refusal:
    """One order PostgreSQL refused, with what it said."""

    record: Record
    rejection: Rejection
    constraint: str
    message: str

    @classmethod
    def of(cls, record: Record, exc: DataError | IntegrityError) -> "_Refusal":
        message = first_line(exc).strip()
        diagnostics = getattr(exc.orig, "diag", None)
        name = getattr(diagnostics, "constraint_name", None)
        constraint = name or f"SQLSTATE {getattr(exc.orig, 'pgcode', None) or 'unknown'}"
        full = str(exc.orig).strip() if exc.orig else str(exc)
        return cls(record, Rejection(ErrorType.INVALID_ORDER, {"errors": {"": [full]}}), constraint, message)


class _Tripped(Exception):
    def __init__(self, refusal: _Refusal, reason: str) -> None:
        super().__init__(reason)
        self.refusal, self.reason = refusal, reason
