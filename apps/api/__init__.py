"""The JSON API under ``/api/v1/`` (django-ninja): thin endpoints over the apps'
services and selectors, authenticated by personal access tokens or the session."""
