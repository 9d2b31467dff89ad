import socket

from flask import current_app, jsonify
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from app.errors import first_line
from app.extensions import db
from app.health import bp


@bp.get("/healthz")
def healthz():
    """Liveness: the process answers. Dependencies are /readyz's business."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz():
    """Readiness: PostgreSQL and Kafka reachable, and this worker's consumer in its group.
    503 names each failing part."""
    checks = {
        "postgresql": _check_postgresql(),
        "kafka": _check_kafka(current_app.config["KAFKA_BOOTSTRAP_SERVERS"]),
        "consumer": _check_consumer(),
    }
    ready = all(check["ok"] for check in checks.values())
    response = jsonify(status="ready" if ready else "not_ready", checks=checks)
    response.status_code = 200 if ready else 503
    response.headers["Cache-Control"] = "no-store"
    return response


def _check_postgresql() -> dict:
    try:
        db.session.execute(text("SELECT 1"))
        return {"ok": True}
    except SQLAlchemyError as exc:
        db.session.rollback()
        return {"ok": False, "error": first_line(exc)}


def _check_kafka(bootstrap_servers: str) -> dict:
    errors = []
    for address in bootstrap_servers.split(","):
        host, _, port = address.strip().rpartition(":")
        try:
            with socket.create_connection((host, int(port)), timeout=1):
                return {"ok": True}
        except (OSError, ValueError) as exc:
            errors.append(f"{address}: {exc}")
    return {"ok": False, "error": "; ".join(errors)}


def _check_consumer() -> dict:
    runner = current_app.extensions.get("order_consumer")
    if not current_app.config["CONSUMER_ENABLED"]:
        return {"ok": True, "state": "disabled"}
    if runner is None:
        return {"ok": True, "state": "not running in this process"}
    if runner.consumer is None:
        return {"ok": False, "state": "starting"}
    if runner.consumer.waiting_since is not None:
        return {"ok": False, "state": "waiting out an outage", "retries": runner.consumer.retries}
    if not runner.consumer.joined.is_set():
        return {"ok": False, "state": "not yet in its group"}
    return {"ok": True, "state": "in group"}
