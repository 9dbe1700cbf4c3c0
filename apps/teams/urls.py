from django.urls import path

from apps.teams import token_views, views

app_name = "teams"

urlpatterns = [
    path("teams/", views.team_list, name="team-list"),
    path("teams/new/", views.team_create_view, name="team-create"),
    path("settings/tokens/", token_views.token_list, name="token-list"),
    path("settings/tokens/new/", token_views.token_create, name="token-create"),
    path("settings/tokens/<int:token_id>/revoke/", token_views.token_revoke, name="token-revoke"),
    path("t/<slug:team_slug>/team/", views.team_detail, name="team-detail"),
    path("t/<slug:team_slug>/team/members/", views.member_add, name="member-add"),
    path("t/<slug:team_slug>/team/quotas/", views.team_quotas, name="team-quotas"),
    path("t/<slug:team_slug>/team/members/<int:membership_id>/role/", views.member_role, name="member-role"),
    path(
        "t/<slug:team_slug>/team/members/<int:membership_id>/remove/",
        views.member_remove,
        name="member-remove",
    ),
]
