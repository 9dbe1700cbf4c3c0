from django.urls import URLPattern, path

from apps.registry.views import metamodels as views

urlpatterns: list[URLPattern] = [
    path("t/<slug:team_slug>/models/", views.metamodel_list, name="metamodel-list"),
    path("t/<slug:team_slug>/models/upload/", views.metamodel_upload, name="metamodel-upload"),
    path("models/<int:meta_model_id>/", views.metamodel_detail, name="metamodel-detail"),
    path("models/<int:meta_model_id>/aliases/", views.alias_move, name="alias-move"),
    path("models/<int:meta_model_id>/params.safetensors", views.metamodel_weights, name="metamodel-weights"),
    path("models/<int:meta_model_id>/card.json", views.metamodel_card, name="metamodel-card"),
    # One name, two subjects: reverse with meta_model_id=... or run_id=... (an adapted
    # model is addressed by its adaptation run, like its page /adapted/<run_id>/).
    path("models/<int:meta_model_id>/reviews/", views.review_create, name="review-create"),
    path("adapted/<int:run_id>/reviews/", views.review_create, name="review-create"),
    path("adapted/<int:run_id>/params.safetensors", views.adapted_weights, name="adapted-weights"),
    path("adapted/<int:run_id>/card.json", views.adapted_card, name="adapted-card"),
]
