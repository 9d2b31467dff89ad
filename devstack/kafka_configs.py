"""Kafka's incremental config change (IncrementalAlterConfigs, KIP-339) for kafka-python-ng 2.2.3.

That client has only the old AlterConfigs, which replaces a topic's whole set of settings: every
setting it does not name goes back to the broker's default (a retention someone set on a broker we
did not create, for instance). The incremental request changes only the settings it names. Its
version 0 is defined here with the client's own protocol types and sent through the admin client,
the way its alter_configs sends the old one. (Upstream kafka-python has it since 2026: PR #2901;
this module goes once the project moves to a client that has it.)"""

from kafka import KafkaAdminClient
from kafka.admin import ConfigResourceType
from kafka.errors import for_code
from kafka.protocol.api import Request, Response
from kafka.protocol.types import Array, Boolean, Int8, Int16, Int32, Schema, String

SET = 0  # the operation; 1 is DELETE, 2 APPEND, 3 SUBTRACT


class IncrementalAlterConfigsResponse_v0(Response):  # noqa: N801 (kafka-python's naming)
    API_KEY = 44
    API_VERSION = 0
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        ("responses", Array(
            ("error_code", Int16),
            ("error_message", String("utf-8")),
            ("resource_type", Int8),
            ("resource_name", String("utf-8")))),
    )


class IncrementalAlterConfigsRequest_v0(Request):  # noqa: N801
    API_KEY = 44
    API_VERSION = 0
    RESPONSE_TYPE = IncrementalAlterConfigsResponse_v0
    SCHEMA = Schema(
        ("resources", Array(
            ("resource_type", Int8),
            ("resource_name", String("utf-8")),
            ("configs", Array(
                ("name", String("utf-8")),
                ("config_operation", Int8),
                ("value", String("utf-8")))))),
        ("validate_only", Boolean),
    )


def set_topic_configs(admin: KafkaAdminClient, topic: str, configs: dict[str, str]) -> None:
    """Set `configs` on `topic`, leaving its other settings as they are; raises the broker's error."""
    request = IncrementalAlterConfigsRequest_v0(
        resources=[(ConfigResourceType.TOPIC.value, topic,
                    [(name, SET, value) for name, value in configs.items()])],
        validate_only=False,
    )
    future = admin._send_request_to_node(admin._client.least_loaded_node(), request)
    admin._wait_for_futures([future])
    for error_code, error_message, _type, name in future.value.responses:
        if error_code:
            raise for_code(error_code)(f"changing the settings of topic {name}: {error_message}")
