"""Root fixtures. Factories live in tests/factories.py."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "metaweb.settings.test")


def pytest_collection_modifyitems(config, items):
    """Run the end-to-end tests last: they are the slowest, and they hold a browser
    (and its event loop) open while they run."""
    items.sort(
        key=lambda item: item.nodeid.startswith("tests/e2e/") or item.get_closest_marker("e2e") is not None
    )


@pytest.fixture(autouse=True)
def _isolated_data_dir(request, tmp_path):
    """Uploads and checkpoints go to a fresh folder per test (Django tests only)."""
    if not request.config.pluginmanager.hasplugin("django"):
        return
    settings = request.getfixturevalue("settings")
    settings.DATA_DIR = tmp_path / "data"
    settings.MEDIA_ROOT = settings.DATA_DIR / "media"
    settings.RUNS_DIR = settings.DATA_DIR / "runs"


@pytest.fixture
def team_roles(db):
    """A team with one user per role, plus an outsider in another team."""
    from apps.teams.models import Role
    from tests.factories import MembershipFactory, TeamFactory, UserFactory

    team = TeamFactory(name="Alpha", slug="alpha")
    users = {}
    for role in (Role.VIEWER, Role.MEMBER, Role.ADMIN):
        users[role.value] = MembershipFactory(
            team=team, role=role, user=UserFactory(username=role.value)
        ).user
    other = TeamFactory(name="Beta", slug="beta")
    users["outsider"] = MembershipFactory(
        team=other, role=Role.ADMIN, user=UserFactory(username="outsider")
    ).user
    return team, users


class Sent(list):
    """Tasks sent to the broker, in order, as ``(name, args, queue)``."""

    def runs(self) -> list[tuple[int, str]]:
        """Each send as ``(run id, queue)``: every task of the project takes one id."""
        return [(args[0], queue) for _, args, queue in self]


@pytest.fixture
def sent(monkeypatch) -> Sent:
    """What the code under test sends to Celery, recorded instead of reaching a broker."""
    from metaweb.celery import app

    calls = Sent()
    monkeypatch.setattr(
        app, "send_task", lambda name, args=None, queue=None, **kw: calls.append((name, args, queue))
    )
    return calls
