from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from apps.api.api import api_urls
from apps.teams.views import home

urlpatterns = [
    path("", home, name="home"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("api/v1/", api_urls()),
    path("", include("apps.teams.urls")),
    path("", include("apps.tasksets.urls")),
    path("", include("apps.experiments.urls")),
    path("", include("apps.registry.urls")),
    path("", include("apps.adaptations.urls")),
    path("", include("apps.reviews.urls")),
]
