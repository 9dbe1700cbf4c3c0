"""Adaptations' URLs: the adapt form, an adapted model's page and its downloads."""

from django.urls import URLPattern, path

from apps.adaptations import views

app_name = "adaptations"

urlpatterns: list[URLPattern] = [
    path("models/<int:meta_model_id>/adapt/", views.adapt_new, name="adapt-new"),
    path("adapted/<int:run_id>/", views.adapted_detail, name="adapted-detail"),
    path("adapted/<int:run_id>/params.safetensors", views.adapted_weights, name="adapted-weights"),
    path("adapted/<int:run_id>/card.json", views.adapted_card, name="adapted-card"),
]
