"""Admin for reviews: read-only, as the registry's."""

from __future__ import annotations

from django.contrib import admin

from apps.registry.admin import ReadOnlyAdmin
from apps.reviews.models import Review


@admin.register(Review)
class ReviewAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "verdict", "meta_model", "adapted_model", "author", "team"]
    list_filter = ["verdict", "team"]
    search_fields = ["comment", "author__username", "meta_model__name"]
    list_select_related = ["meta_model", "adapted_model", "author", "team"]
    date_hierarchy = "created_at"
