"""Admin for the registry: read-only. Meta-models, aliases, adaptations and verdicts
(``apps.adaptations.admin``, ``apps.reviews.admin`` use the same base classes)
change through services (the browser and the workers), which keep the files on disk,
the version numbers, the alias history and the review rules consistent; editing
rows here would bypass all of that."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from apps.registry.models import AliasMove, MetaModel, ModelAlias
from apps.reviews.models import Review


class ReadOnlyAdmin(admin.ModelAdmin):
    """Lists and detail pages only: no add, change or delete."""

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ReviewInline(ReadOnlyInline):
    model = Review
    fk_name = "meta_model"
    fields = ["created_at", "verdict", "author", "comment"]
    readonly_fields = fields


@admin.register(MetaModel)
class MetaModelAdmin(ReadOnlyAdmin):
    list_display = [
        "name",
        "version",
        "team",
        "algorithm",
        "source",
        "taskset_version",
        "created_by",
        "created_at",
    ]
    list_filter = ["algorithm", "source", "team"]
    search_fields = ["name", "description", "weights_sha256", "training_run__id"]
    list_select_related = ["team", "taskset_version__taskset", "created_by"]
    date_hierarchy = "created_at"
    inlines = [ReviewInline]


class AliasMoveInline(ReadOnlyInline):
    model = AliasMove
    fields = ["moved_at", "from_model", "to_model", "moved_by"]
    readonly_fields = fields


@admin.register(ModelAlias)
class ModelAliasAdmin(ReadOnlyAdmin):
    list_display = ["model_name", "alias", "meta_model", "team", "updated_at"]
    list_filter = ["alias", "team"]
    search_fields = ["model_name", "alias"]
    list_select_related = ["meta_model", "team"]
    inlines = [AliasMoveInline]
