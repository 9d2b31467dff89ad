"""GET /openapi.json: an OpenAPI 3.1 document whose Order schema is generated from the Cerberus
schema, so the contract as validated and the contract as documented cannot drift apart."""

import copy
from functools import cache
from typing import Any

from flask import Flask, jsonify

from app.api.pages import SUMMARY_COUNT, SUMMARY_FIELDS
from app.api.routes import DEFAULT_PAGE, MAX_PAGE
from app.auth.masking import PERSONAL_FIELDS
from app.auth.policy import LIST, READ, SCOPES
from app.auth.provider import discovery_url
from app.kafka_health import PROBLEMS as KAFKA_PROBLEMS
from app.validation.schema import MAX_RECORD_BYTES, ORDER_SCHEMA, ORDER_UID_PATTERN

INTEGER_NOTE = "A JSON integer, written without a fraction or exponent (1817, not 1817.0)."
TEXT_NOTE = "Strings never contain NUL (U+0000) or unpaired surrogates; PostgreSQL can't store them."


def json_schema(rules: dict[str, Any]) -> dict[str, Any]:
    """The JSON Schema (2020-12, as OpenAPI 3.1 uses) for one Cerberus field definition."""
    if "text" in rules:
        minimum, maximum = rules["text"]
        schema: dict[str, Any] = {"type": "string", "minLength": minimum, "maxLength": maximum}
        if "regex" in rules:
            # "$(?![\s\S])": the end of the string in ECMA and in Python regexes alike (Python's "$"
            # alone also matches before a final newline).
            schema["pattern"] = "^(?:" + rules["regex"].removesuffix(r"\Z") + r")$(?![\s\S])"
        return schema
    if "int64" in rules:
        return {"type": "integer", "minimum": 0, "maximum": rules["int64"], "format": "int64",
                "description": INTEGER_NOTE}
    if rules.get("rfc3339"):
        return {"type": "string", "format": "date-time"}
    if rules.get("type") == "dict":
        return object_schema(rules["schema"])
    if rules.get("type") == "list":
        return {
            "type": "array",
            "minItems": rules["minlength"],
            "maxItems": rules["maxlength"],
            "items": json_schema(rules["schema"]),
        }
    raise ValueError(f"no JSON Schema for Cerberus rules {rules}")


def object_schema(fields: dict[str, dict]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {name: json_schema(rules) for name, rules in fields.items()},
        "required": list(fields),
        "additionalProperties": False,
    }


def summary_schema(order: dict[str, Any]) -> dict[str, Any]:
    """The OrderSummary schema, from the summary's one definition and the Order schema."""
    properties = {}
    for key, path in SUMMARY_FIELDS.items():
        schema = order
        for name in path:
            schema = schema["properties"][name]
        properties[key] = schema
    properties[SUMMARY_COUNT] = {"type": "integer", "minimum": 1}
    return {"type": "object", "additionalProperties": False, "required": list(properties),
            "properties": properties}


def _json(schema_ref: str, description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema_ref}"}}}}


def masked_order_schema(order: dict[str, Any]) -> dict[str, Any]:
    """The Order schema with each personal field as its masked form (app/auth/masking.py)."""
    masked = copy.deepcopy(order)
    masked["description"] = ("An order as a caller without orders:pii sees it: each personal field keeps its "
                             "first character and its shape, the rest is '*'.")
    for group, field in PERSONAL_FIELDS:
        limits = masked["properties"][group]["properties"][field]
        masked["properties"][group]["properties"][field] = {
            "type": "string", "maxLength": limits["maxLength"], "description": "personal: masked"}
    return masked


def secured(operation: dict[str, Any], scope: str, refusals: dict[str, Any]) -> dict[str, Any]:
    """The operation with its scope and the answers of the access check."""
    error = _json("Error", "")
    return {**operation, "security": [{OIDC: [scope]}], "responses": {
        **operation["responses"],
        "401": {**error, "description": "No token, or a bad one (WWW-Authenticate: Bearer; the error code)",
                "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}}},
        "403": {**error, "description": f"The token lacks the {scope} scope"},
        **refusals,
    }}


OIDC = "oidc"


@cache
def openapi_document(issuer: str) -> dict[str, Any]:
    error = _json("Error", "")
    order = json_schema({"type": "dict", "schema": ORDER_SCHEMA})
    order["description"] = f"{TEXT_NOTE} Records over {MAX_RECORD_BYTES:,} bytes are rejected."
    order["properties"]["date_created"] = {
        "type": "string",
        "format": "date-time",
        "pattern": r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{6})?Z$",
        "description": "Served in UTC as YYYY-MM-DDTHH:MM:SS[.ffffff]Z",
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "order-service",
            "version": "1.0.0",
            "description": "Orders consumed from Kafka, stored in PostgreSQL, served from a cache. "
                           "Every read needs a bearer token from the OpenID Connect provider with its scope: "
                           + "; ".join(f"{scope}: {meaning}" for scope, meaning in SCOPES.items()) + ".",
        },
        "paths": {
            "/order/{order_uid}": {
                "get": secured({
                    "summary": "One order, as it came in (date_created in UTC)",
                    "parameters": [
                        {"name": "order_uid", "in": "path", "required": True,
                         "schema": {"type": "string", "pattern": f"^{ORDER_UID_PATTERN}$"}},
                        {"name": "If-None-Match", "in": "header", "required": False,
                         "schema": {"type": "string"}},
                    ],
                    "responses": {
                        "200": {"description": "The order: in full with orders:pii, else masked",
                                "content": {"application/json": {"schema": {"anyOf": [
                                    {"$ref": "#/components/schemas/Order"},
                                    {"$ref": "#/components/schemas/MaskedOrder"}]}}},
                                "headers": {
                            "ETag": {"schema": {"type": "string"}, "description": "Of the form served"},
                            "X-Order-Source": {"schema": {"enum": ["cache", "database"]},
                                               "description": "Where the answer came from"},
                            "X-Order-View": {"schema": {"enum": ["full", "masked"]}},
                        }},
                        "304": {"description": "Not modified (If-None-Match matched the ETag)"},
                        "400": {**error, "description": "The id breaks the order_uid rule"},
                        "404": {**error, "description": "No such order"},
                        "503": {**error, "description": "PostgreSQL unavailable"},
                    },
                }, READ, {"400": {**error,
                                  "description": "The id breaks the order_uid rule, or a token in the URL"}})
            },
            "/orders": {
                "get": secured({
                    "summary": "The most recent orders, newest first",
                    "parameters": [
                        {"name": "limit", "in": "query", "required": False,
                         "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE,
                                    "default": DEFAULT_PAGE}},
                        {"name": "before", "in": "query", "required": False,
                         "schema": {"type": "string"}, "description": "next_cursor of the page before"},
                    ],
                    "responses": {
                        "200": _json("RecentOrders", "A page of order summaries"),
                        "400": {**error, "description": "Bad limit or cursor, or a token in the URL"},
                        "503": {**error, "description": "PostgreSQL unavailable"},
                    },
                }, LIST, {})
            },
            "/healthz": {"get": {"summary": "Liveness", "responses": {"200": _json("Health", "Alive")}}},
            "/readyz": {
                "get": {
                    "summary": "Readiness to serve reads (PostgreSQL); Kafka, the consumer and the "
                               "cache warm-up are reported and never fail it",
                    "responses": {"200": _json("Readiness", "Ready"),
                                  "503": _json("Readiness", "PostgreSQL is not reachable")},
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics, all workers added up",
                    "responses": {"200": {"description": "Prometheus text format",
                                          "content": {"text/plain": {"schema": {"type": "string"}}}}},
                }
            },
        },
        "components": {
            "securitySchemes": {OIDC: {
                "type": "openIdConnect", "openIdConnectUrl": discovery_url(issuer),
                "description": "Authorization: Bearer <access token> from this provider (a JWT); scopes: "
                               + ", ".join(SCOPES)}},
            "schemas": {
                "Order": order,
                "MaskedOrder": masked_order_schema(order),
                "OrderSummary": summary_schema(order),
                "RecentOrders": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["orders", "next_cursor"],
                    "properties": {
                        "orders": {"type": "array", "items": {"$ref": "#/components/schemas/OrderSummary"}},
                        "next_cursor": {"type": ["string", "null"]},
                    },
                },
                "Error": {
                    "type": "object",
                    "required": ["error", "message"],
                    "additionalProperties": False,
                    "properties": {"error": {"type": "string"}, "message": {"type": "string"}},
                },
                "Health": {"type": "object", "required": ["status"],
                           "properties": {"status": {"const": "ok"}}},
                "Readiness": {
                    "type": "object",
                    "description": "The status for anyone; the other fields for METRICS_ALLOW only",
                    "required": ["status"],
                    "properties": {
                        "status": {"enum": ["ready", "not_ready"]},
                        "checks": {"type": "object", "additionalProperties": {
                            "type": "object", "required": ["ok"], "properties": {
                                "ok": {"type": "boolean"},
                                # Kafka's, when not ok: what is wrong and what to fix (never a secret).
                                "problem": {"enum": list(KAFKA_PROBLEMS)},
                                "error": {"type": "string"}}}},
                        "consumer": {"type": "object", "required": ["state"], "properties": {
                            "state": {"enum": ["disabled", "not running in this process", "starting",
                                               "joining its group", "in group", "waiting out an outage",
                                               "stopping", "stopped"]},
                            "partitions": {"type": "array", "items": {"type": "integer"}},
                            "restarts": {"type": "integer"},
                            "retries": {"type": "integer"},
                            "waiting_s": {"type": "number"}}},
                        "cache_warmup": {"enum": ["off", "running", "done"]},
                        "auth": {"type": "object", "required": ["enabled"], "properties": {
                            "enabled": {"type": "boolean"}, "warning": {"type": "string"}}},
                    },
                },
            }
        },
    }


def init_openapi(app: Flask) -> None:
    @app.get("/openapi.json")
    def openapi_json():
        return jsonify(openapi_document(app.config["AUTH_ISSUER"]))
