from django.urls import URLPattern, path

from apps.registry.views import adaptations as views

urlpatterns: list[URLPattern] = [
    path("models/<int:meta_model_id>/adapt/", views.adapt_new, name="adapt-new"),
    path("adapted/<int:run_id>/", views.adapted_detail, name="adapted-detail"),
]
