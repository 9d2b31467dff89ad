import logging
from logging.config import fileConfig

from alembic import context
from flask import current_app
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from app.data.privileges import grant_service_role
from config import engine_options

# this is the Alembic Config object, which provides
# access to the values within the .ini file in use.
config = context.config

# Interpret the config file for Python logging.
# This line sets up loggers basically.
fileConfig(config.config_file_name, disable_existing_loggers=False)
logger = logging.getLogger('alembic.env')


def migration_engine(app_config):
    """An engine on MIGRATION_DATABASE_URL (`flask db upgrade`): the app's connection settings, no
    pool, and a refusal when it names another database than SQLALCHEMY_DATABASE_URI, where the
    migrations would build tables that the service never sees."""
    owner = make_url(app_config["MIGRATION_DATABASE_URL"])
    service = make_url(app_config["SQLALCHEMY_DATABASE_URI"])
    if owner.database != service.database:
        raise ValueError(f"MIGRATION_DATABASE_URL names database {owner.database!r} but DATABASE_URL "
                         f"{service.database!r}: they must be the same database (set "
                         "MIGRATION_DATABASE_URL to its owner's URL, or unset it to migrate as DATABASE_URL)")
    return create_engine(owner, poolclass=NullPool, connect_args=engine_options(app_config)["connect_args"])


def get_engine():
    # The owner's role (MIGRATION_DATABASE_URL), not the service's (DATABASE_URL), which may only
    # read and insert. One engine for the whole command.
    engine = current_app.extensions.get('migration_engine')
    if engine is None:
        engine = current_app.extensions['migration_engine'] = migration_engine(current_app.config)
    return engine


def get_engine_url():
    try:
        return get_engine().url.render_as_string(hide_password=False).replace(
            '%', '%%')
    except AttributeError:
        return str(get_engine().url).replace('%', '%%')


# add your model's MetaData object here
# for 'autogenerate' support
# from myapp import mymodel
# target_metadata = mymodel.Base.metadata
config.set_main_option('sqlalchemy.url', get_engine_url())
target_db = current_app.extensions['migrate'].db

# other values from the config, defined by the needs of env.py,
# can be acquired:
# my_important_option = config.get_main_option("my_important_option")
# ... etc.


def get_metadata():
    if hasattr(target_db, 'metadatas'):
        return target_db.metadatas[None]
    return target_db.metadata


def run_migrations_offline():
    """Run migrations in 'offline' mode.

    This configures the context with just a URL
    and not an Engine, though an Engine is acceptable
    here as well.  By skipping the Engine creation
    we don't even need a DBAPI to be available.

    Calls to context.execute() here emit the given string to the
    script output.

    """
    url = config.get_main_option("sqlalchemy.url")
    context.configure(
        url=url, target_metadata=get_metadata(), literal_binds=True
    )

    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online():
    """Run migrations in 'online' mode.

    In this scenario we need to create an Engine
    and associate a connection with the context.

    """

    # this callback is used to prevent an auto-migration from being generated
    # when there are no changes to the schema
    # reference: http://alembic.zzzcomputing.com/en/latest/cookbook.html
    def process_revision_directives(context, revision, directives):
        if getattr(config.cmd_opts, 'autogenerate', False):
            script = directives[0]
            if script.upgrade_ops.is_empty():
                directives[:] = []
                logger.info('No changes in schema detected.')

    conf_args = current_app.extensions['migrate'].configure_args
    if conf_args.get("process_revision_directives") is None:
        conf_args["process_revision_directives"] = process_revision_directives

    connectable = get_engine()

    with connectable.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=get_metadata(),
            **conf_args
        )

        with context.begin_transaction():
            # A schema change may rightly take longer than the service lets a statement run
            # (DB_STATEMENT_TIMEOUT_MS); it keeps the lock timeout, so it never queues reads for long.
            context.execute("SET LOCAL statement_timeout = 0")
            context.run_migrations()
            grant_to_the_service(connection)


def grant_to_the_service(connection):
    """DATABASE_URL's role gets SELECT and INSERT (app/data/privileges.py), in the migrations'
    transaction; nothing to do when one role does both."""
    service = make_url(current_app.config['SQLALCHEMY_DATABASE_URI']).username
    if service and service != connection.engine.url.username:
        grant_service_role(connection, service, get_metadata())


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
