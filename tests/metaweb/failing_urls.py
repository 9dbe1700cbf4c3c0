"""The project's URLs plus one view that fails, for the htmx error tests."""

from django.http import HttpRequest, HttpResponse
from django.urls import path

from metaweb.urls import urlpatterns as project_urlpatterns


def broken(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("secret internals of the failure")


urlpatterns = [path("broken/", broken, name="broken"), *project_urlpatterns]
