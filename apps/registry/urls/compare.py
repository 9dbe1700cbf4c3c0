from django.urls import URLPattern, path

from apps.registry.views import compare as views

urlpatterns: list[URLPattern] = [
    path("t/<slug:team_slug>/compare/", views.compare, name="compare"),
    path("models/<int:meta_model_id>/evaluate/", views.evaluation_start, name="evaluation-start"),
    path("tasksets/<int:taskset_id>/leaderboard/", views.leaderboard, name="leaderboard"),
]
