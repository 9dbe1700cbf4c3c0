"""The registry's URLs, one module per area."""

from apps.registry.urls import adaptations, compare, metamodels

app_name = "registry"

urlpatterns = metamodels.urlpatterns + adaptations.urlpatterns + compare.urlpatterns
