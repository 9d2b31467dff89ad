from flask import jsonify

from app.health import bp


@bp.get("/healthz")
def healthz():
    """Liveness: the process answers. Dependencies are /readyz's business."""
    return jsonify(status="ok")
