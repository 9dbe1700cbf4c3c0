from django.urls import path

from apps.tasksets import views

app_name = "tasksets"

urlpatterns = [
    path("t/<slug:team_slug>/tasksets/", views.taskset_list, name="taskset-list"),
    path("t/<slug:team_slug>/tasksets/new/", views.taskset_create_view, name="taskset-create"),
    path(
        "t/<slug:team_slug>/tasksets/new/fields/", views.taskset_family_fields, name="taskset-family-fields"
    ),
    path("tasksets/<int:taskset_id>/", views.taskset_detail, name="taskset-detail"),
    path("tasksets/<int:taskset_id>/edit/", views.taskset_edit_view, name="taskset-edit"),
    path("tasksets/<int:taskset_id>/v/<int:number>/preview/", views.taskset_preview, name="taskset-preview"),
]
