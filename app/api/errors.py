"""The API's error shape, the contract's `{"error": ..., "message": ...}`."""

from flask import Response, jsonify


def json_error(status: int, error: str, message: str) -> Response:
    response = jsonify(error=error, message=message)
    response.status_code = status
    return response
