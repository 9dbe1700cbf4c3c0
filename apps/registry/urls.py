"""The registry's URLs: meta-models, their aliases and downloads."""

from django.urls import URLPattern, path

from apps.registry import views

app_name = "registry"

urlpatterns: list[URLPattern] = [
    path("t/<slug:team_slug>/models/", views.metamodel_list, name="metamodel-list"),
    path("t/<slug:team_slug>/models/upload/", views.metamodel_upload, name="metamodel-upload"),
    path("models/<int:meta_model_id>/", views.metamodel_detail, name="metamodel-detail"),
    path("models/<int:meta_model_id>/aliases/", views.alias_move, name="alias-move"),
    path("models/<int:meta_model_id>/params.safetensors", views.metamodel_weights, name="metamodel-weights"),
    path("models/<int:meta_model_id>/card.json", views.metamodel_card, name="metamodel-card"),
    path("models/<int:meta_model_id>/explorer.json", views.metamodel_explorer, name="metamodel-explorer"),
    path("models/<int:meta_model_id>/task-map/", views.metamodel_task_map, name="metamodel-task-map"),
]
