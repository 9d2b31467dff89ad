"""Migrations against the real PostgreSQL: they build exactly what the models describe, and they
come down again."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade
from sqlalchemy import inspect

from app import create_app
from app.extensions import db
from config import Config, TestConfig
from harness.postgres import app_database, create_database, drop_database


def test_the_models_and_the_migrations_agree(app):
    """An autogenerate comparison (what `flask db migrate` would write) finds nothing to do."""
    with app.app_context(), db.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), db.metadata)
    assert differences == []


def test_upgrade_on_an_empty_database_then_downgrade_base_removes_everything():
    url = create_database(Config.SQLALCHEMY_DATABASE_URI, "orders_migrations")
    try:
        app = create_app(TestConfig, app_database(url))
        with app.app_context():
            upgrade()
            tables = set(inspect(db.engine).get_table_names())
            assert {"orders", "order_items", "alembic_version"} <= tables
            indexes = {index["name"] for index in inspect(db.engine).get_indexes("orders")}
            assert "ix_orders_recent" in indexes
            downgrade(revision="base")
            assert set(inspect(db.engine).get_table_names()) == {"alembic_version"}
            upgrade()  # and back up again, as a deploy after a rollback would
            assert {"orders", "order_items"} <= set(inspect(db.engine).get_table_names())
            db.engine.dispose()
    finally:
        drop_database(url)
