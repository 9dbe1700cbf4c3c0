"""Write ``metaweb/client/types.py`` from the API's schema (``--check``: only compare)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from apps.api.client_types import TARGET, render


class Command(BaseCommand):
    help = "Write metaweb/client/types.py from the API's OpenAPI schema."

    def add_arguments(self, parser):
        parser.add_argument("--check", action="store_true", help="exit 1 if the file is out of date")

    def handle(self, *args, check: bool = False, **options):
        text = render()
        current = TARGET.read_text() if TARGET.exists() else ""
        if check:
            if current != text:
                raise CommandError(f"{TARGET} is out of date: run python manage.py client_types")
            self.stdout.write(f"{TARGET} is up to date.")
            return
        TARGET.write_text(text)
        self.stdout.write(f"Wrote {TARGET}.")
