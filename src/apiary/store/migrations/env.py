"""Alembic's environment: migrations run on the connection `apiary.store.migrations.upgrade` hands in
(config.attributes["connection"]), inside its transaction."""

from alembic import context

from apiary.store import schema

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=schema.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
