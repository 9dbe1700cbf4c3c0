"""Admin for experiments and runs: read-mostly. Runs change through services (the
browser and the workers), never by hand-editing rows here."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from apps.experiments.models import Experiment, MetricSeries, Run, RunEvent


@admin.register(Experiment)
class ExperimentAdmin(admin.ModelAdmin):
    list_display = ["name", "team", "created_by", "created_at"]
    list_filter = ["team"]
    search_fields = ["name", "description"]
    readonly_fields = ["team", "created_by", "created_at"]
    list_select_related = ["team", "created_by"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


class RunEventInline(admin.TabularInline):
    model = RunEvent
    extra = 0
    can_delete = False
    fields = ["created_at", "kind", "attempt", "message"]
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Run | None = None) -> bool:
        return False


@admin.register(Run)
class RunAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "experiment",
        "team",
        "algorithm",
        "status",
        "step",
        "total_steps",
        "queue",
        "created_at",
    ]
    list_filter = ["status", "algorithm", "queue", "kind", "team"]
    search_fields = ["id", "experiment__name", "worker", "error"]
    list_select_related = ["experiment", "team"]
    date_hierarchy = "created_at"
    inlines = [RunEventInline]
    readonly_fields = [f.name for f in Run._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Run | None = None) -> bool:
        return False


@admin.register(MetricSeries)
class MetricSeriesAdmin(admin.ModelAdmin):
    """A run's metrics, with their figures; the points are packed in chunks, not
    rows, so the admin shows series only (the run page draws them, the CSV lists them)."""

    list_display = ["run", "name", "count", "last_step", "last_value", "low", "high"]
    list_filter = ["name"]
    search_fields = ["run__id"]
    raw_id_fields = ["run"]
    readonly_fields = ["run", "name", "count", "last_step", "last_value", "low", "high"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: MetricSeries | None = None) -> bool:
        return False


@admin.register(RunEvent)
class RunEventAdmin(admin.ModelAdmin):
    list_display = ["run", "kind", "attempt", "created_at"]
    list_filter = ["kind"]
    search_fields = ["run__id", "message"]
    raw_id_fields = ["run"]
    readonly_fields = ["run", "kind", "attempt", "message", "created_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: RunEvent | None = None) -> bool:
        return False
