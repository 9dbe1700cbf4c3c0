"""Admin for adaptations and adapted models: read-only, as the registry's."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from apps.adaptations.models import Adaptation, AdaptedModel
from apps.registry.admin import ReadOnlyAdmin


@admin.register(Adaptation)
class AdaptationAdmin(ReadOnlyAdmin):
    list_display = ["id", "meta_model", "target", "task_index", "steps", "lr", "run"]
    list_filter = ["target"]
    search_fields = ["meta_model__name", "run__id"]
    list_select_related = ["meta_model", "run"]
    raw_id_fields = ["run", "meta_model"]


@admin.register(AdaptedModel)
class AdaptedModelAdmin(ReadOnlyAdmin):
    list_display = ["id", "meta_model", "team", "metric", "before", "after", "ci95", "n_tasks", "created_at"]
    list_filter = ["metric", "team"]
    search_fields = ["meta_model__name", "adaptation__run__id"]
    list_select_related = ["meta_model", "team"]
    exclude = ["losses", "scores", "task_ids"]  # raw float32 bytes; the review page draws them

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return [f.name for f in self.model._meta.fields if f.name not in self.exclude]
