"""Reviews' URLs: verdicts, the side-by-side comparison and the leaderboard."""

from django.urls import URLPattern, path

from apps.reviews import views

app_name = "reviews"

urlpatterns: list[URLPattern] = [
    # One name, two subjects: reverse with meta_model_id=... or run_id=... (an adapted
    # model is addressed by its adaptation run, like its page /adapted/<run_id>/).
    path("models/<int:meta_model_id>/reviews/", views.review_create, name="review-create"),
    path("adapted/<int:run_id>/reviews/", views.review_create, name="review-create"),
    path("t/<slug:team_slug>/compare/", views.compare, name="compare"),
    path("models/<int:meta_model_id>/evaluate/", views.evaluation_start, name="evaluation-start"),
    path("tasksets/<int:taskset_id>/leaderboard/", views.leaderboard, name="leaderboard"),
]
