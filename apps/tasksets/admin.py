from django.contrib import admin

from apps.tasksets.models import TaskSet, TaskSetVersion


class TaskSetVersionInline(admin.TabularInline):
    """Versions are immutable: shown, never edited here."""

    model = TaskSetVersion
    extra = 0
    can_delete = False
    show_change_link = True
    fields = ["number", "description", "data_sha256", "created_by", "created_at"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:  # noqa: ARG002
        return False


@admin.register(TaskSet)
class TaskSetAdmin(admin.ModelAdmin):
    list_display = ["name", "team", "family", "created_by", "created_at"]
    list_filter = ["family", "team"]
    search_fields = ["name", "team__name", "team__slug"]
    raw_id_fields = ["created_by"]
    readonly_fields = ["created_at"]
    inlines = [TaskSetVersionInline]


@admin.register(TaskSetVersion)
class TaskSetVersionAdmin(admin.ModelAdmin):
    list_display = ["taskset", "number", "created_by", "created_at", "data_sha256"]
    list_filter = ["taskset__family"]
    search_fields = ["taskset__name", "description", "data_sha256"]
    list_select_related = ["taskset", "created_by"]
    # Immutable: runs point at versions, so a version is shown, never changed.
    fields = [
        "taskset",
        "number",
        "description",
        "params",
        "data_file",
        "data_sha256",
        "data_summary",
        "created_by",
        "created_at",
    ]
    readonly_fields = fields

    def has_add_permission(self, request) -> bool:  # noqa: ARG002
        # Versions are made by the taskset_version_create service (validation, numbering, files).
        return False
