"""Moving the test database between migrations, for tests of a data migration."""

from __future__ import annotations

from django.apps.registry import Apps
from django.db import connection
from django.db.migrations.executor import MigrationExecutor


def migrate(targets: list[tuple[str, str | None]]) -> Apps:
    """Migrate to ``targets`` (``(app, None)``: before the app's first migration) and
    return the historical models at that state."""
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state([target for target in targets if target[1] is not None]).apps


def migrate_latest() -> None:
    """Back to every app's newest migration: a test that went back in time must leave
    the database as the next test expects it (a later migration's columns included)."""
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())
