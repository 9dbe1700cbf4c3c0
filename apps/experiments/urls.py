from django.urls import path

from apps.experiments import annotation_views, compare_views, sweep_views, views, views_run_list

app_name = "experiments"

urlpatterns = [
    path("t/<slug:team_slug>/runs/", views_run_list.run_list, name="run-list"),
    path("t/<slug:team_slug>/runs/views/", views_run_list.saved_view_create, name="saved-view-create"),
    path(
        "t/<slug:team_slug>/runs/views/<int:view_id>/delete/",
        views_run_list.saved_view_delete,
        name="saved-view-delete",
    ),
    path("t/<slug:team_slug>/runs/new/", views.run_launch, name="run-launch"),
    path("t/<slug:team_slug>/runs/archive/", views_run_list.runs_archive, name="runs-archive"),
    path("t/<slug:team_slug>/runs/export.csv", views_run_list.run_list_csv, name="run-list-csv"),
    path("t/<slug:team_slug>/runs/compare/", compare_views.run_compare, name="run-compare"),
    path(
        "t/<slug:team_slug>/runs/compare/series/", compare_views.run_compare_series, name="run-compare-series"
    ),
    path(
        "t/<slug:team_slug>/runs/compare/importance/",
        compare_views.run_compare_importance,
        name="run-compare-importance",
    ),
    path("t/<slug:team_slug>/sweeps/", sweep_views.sweep_list, name="sweep-list"),
    path("t/<slug:team_slug>/sweeps/<int:sweep_id>/", sweep_views.sweep_detail, name="sweep-detail"),
    path("t/<slug:team_slug>/sweeps/<int:sweep_id>/stop/", sweep_views.sweep_stop, name="sweep-stop"),
    path("t/<slug:team_slug>/experiments/", views.experiment_list, name="experiment-list"),
    path("t/<slug:team_slug>/experiments/new/", views.experiment_create, name="experiment-create"),
    path("experiments/<int:experiment_id>/", views.experiment_detail, name="experiment-detail"),
    path("experiments/<int:experiment_id>/edit/", views.experiment_edit, name="experiment-edit"),
    path("runs/<int:run_id>/", views.run_detail, name="run-detail"),
    path("runs/<int:run_id>/cancel/", views.run_cancel, name="run-cancel"),
    path("runs/<int:run_id>/clone/", views.run_clone, name="run-clone"),
    path("runs/<int:run_id>/metrics.csv", views.run_metrics_csv, name="run-metrics-csv"),
    path("runs/<int:run_id>/checkpoint.safetensors", views.run_checkpoint, name="run-checkpoint"),
    path("runs/<int:run_id>/files/<int:file_id>", views.run_file, name="run-file"),
]

# Tags and notes, the same endpoints for runs and for experiments.
for _kind, _prefix in (("run", "runs"), ("experiment", "experiments")):
    urlpatterns += [
        path(f"{_prefix}/<int:pk>/tags/", annotation_views.tag_add, {"kind": _kind}, name=f"{_kind}-tag-add"),
        path(
            f"{_prefix}/<int:pk>/tags/<int:tag_id>/remove/",
            annotation_views.tag_remove,
            {"kind": _kind},
            name=f"{_kind}-tag-remove",
        ),
        path(
            f"{_prefix}/<int:pk>/note/", annotation_views.note_update, {"kind": _kind}, name=f"{_kind}-note"
        ),
    ]
