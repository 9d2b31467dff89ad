"""Flask CLI commands: `flask seed-orders`, `flask consume`, `flask dlq`, `flask auth`,
`flask backfill-bodies`."""

from flask import Flask


def register_commands(app: Flask) -> None:
    from app.cli.auth import auth
    from app.cli.backfill import backfill
    from app.cli.consume import consume
    from app.cli.dlq import dlq
    from app.cli.seed import seed_orders

    app.cli.add_command(seed_orders)
    app.cli.add_command(consume)
    app.cli.add_command(dlq)
    app.cli.add_command(auth)
    app.cli.add_command(backfill)
