"""One audit line per read of an order: who (subject, client), with which scopes, which order,
masked or not, and the request id. Never the order's content. Under LOG_FORMAT=json the line's
fields are keys of its JSON object."""

import logging

from app.auth.tokens import Principal

audit_log = logging.getLogger("order_service.audit")


def audit_order_read(principal: Principal | None, order_uid: str, masked: bool, request_id: str,
                     via: str) -> None:
    """`principal` is None when authentication is off (AUTH_ENABLED=false); `via` is "api" or "page"."""
    fields = {
        "event": "order_read",
        "subject": principal.subject if principal else "-",
        "client_id": principal.client_id if principal else "-",
        "scopes": " ".join(sorted(principal.scopes)) if principal else "-",
        "order_uid": order_uid,
        "masked": masked,
        "via": via,
        "request_id": request_id,
    }
    text = " ".join(f"{key}={value!r}" if key == "scopes" else f"{key}={value}"
                    for key, value in fields.items() if key != "event")
    audit_log.info("order read: %s", text, extra={"fields": fields})
