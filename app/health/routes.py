import logging

from flask import current_app, jsonify, request
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from app.data.errors import first_line
from app.extensions import db
from app.health import bp
from app.kafka_health import kafka_health
from app.security import AUTH_OFF_WARNING, allowed_networks, is_allowed

log = logging.getLogger(__name__)


@bp.get("/healthz")
def healthz():
    """Liveness: the process answers. Dependencies are /readyz's business."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz():
    """Readiness: this instance can serve reads, which needs PostgreSQL only. Kafka and the
    consumer are reported, never a reason to fail: a rebalance (every deploy, scale-up or crash
    makes one) must not take every instance out of the load balancer at once. The status is for
    anyone; the details (which part is down, whether authentication is on) for METRICS_ALLOW
    only, and the log says why, as error details are not for public clients."""
    postgresql_ok = _postgresql_ok()
    answer = {"status": "ready" if postgresql_ok else "not_ready"}
    if is_allowed(request.remote_addr or "", allowed_networks(current_app.config["METRICS_ALLOW"])):
        # The details, for operators (METRICS_ALLOW) only: what runs, and whether anyone may read.
        answer.update(
            checks={
                "postgresql": {"ok": postgresql_ok},
                # Not ok, and why (app.kafka_health.PROBLEMS): a probe's verdict, at most MAX_AGE_S
                # old, which says what to fix and never holds a secret.
                "kafka": kafka_health(current_app).verdict().as_json(),
            },
            consumer=_consumer_status(),
            cache_warmup=_warmup_status(),
            auth=_auth_status(),
        )
    response = jsonify(answer)
    response.status_code = 200 if postgresql_ok else 503
    response.headers["Cache-Control"] = "no-store"
    return response


def _postgresql_ok() -> bool:
    try:
        db.session.execute(text("SELECT 1"))
        return True
    except SQLAlchemyError as exc:
        db.session.rollback()
        log.warning("/readyz: PostgreSQL is not reachable: %s", first_line(exc))
        return False


def _consumer_status() -> dict:
    runtime = current_app.extensions.get("order_consumer")
    if runtime is None:
        state = "disabled" if not current_app.config["CONSUMER_ENABLED"] else "not running in this process"
        return {"state": state}
    return runtime.status()


def _auth_status() -> dict[str, object]:
    if current_app.config["AUTH_ENABLED"]:
        return {"enabled": True}
    return {"enabled": False, "warning": AUTH_OFF_WARNING}


def _warmup_status() -> str:
    warmup = current_app.extensions.get("cache_warmup")
    if warmup is None:
        return "off"
    return "running" if warmup.is_alive() else "done"
