"""Websocket routes. One group per object: ``run-<id>`` and ``team-<id>``."""

from django.urls import path

from apps.experiments import consumers

websocket_urlpatterns = [
    path("ws/runs/<int:run_id>/", consumers.RunConsumer.as_asgi()),
    path("ws/teams/<slug:team_slug>/", consumers.TeamRunsConsumer.as_asgi()),
]
