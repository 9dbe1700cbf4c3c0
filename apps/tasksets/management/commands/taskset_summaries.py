"""``manage.py taskset_summaries [--all]``: read uploaded task-set files again and
store their summaries as the engine makes them today.

Uploads made before a summary recorded the largest episode every task gives
(``episode_room``) show no bounds beside ways, shots and query on the launch form.
By default this refreshes those versions only; ``--all`` refreshes every uploaded
version. Each version is one short write; one that cannot be read is reported and
left as it was, and the command goes on (exit 1 if any failed).
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from apps.tasksets.models import TaskSetVersion
from apps.tasksets.services import taskset_version_summary_refresh
from apps.tasksets.uploads import DATA_FAMILIES


class Command(BaseCommand):
    help = "Refresh the stored summaries of uploaded task-set versions (those without episode_room)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--all", action="store_true", help="every uploaded version, not only old ones")

    def handle(self, *args: Any, **options: Any) -> None:
        versions = (
            TaskSetVersion.objects.filter(taskset__family__in=DATA_FAMILIES)
            .exclude(data_file="")
            .select_related("taskset")
            .order_by("pk")
        )
        refreshed = failed = 0
        for version in versions.iterator():
            summary = version.data_summary if isinstance(version.data_summary, dict) else {}
            if not options["all"] and "episode_room" in summary:
                continue
            label = f"task set {version.taskset.name!r} v{version.number} (#{version.taskset_id})"
            try:
                taskset_version_summary_refresh(version=version)
            except ValidationError as error:
                failed += 1
                self.stderr.write(f"{label}: not refreshed: {' '.join(error.messages)}")
                continue
            refreshed += 1
            self.stdout.write(f"{label}: refreshed.")
        self.stdout.write(f"{refreshed} refreshed, {failed} not.")
        if failed:
            raise CommandError(f"{failed} version(s) could not be read; see above.")
