from django.apps import AppConfig


class AdaptationsConfig(AppConfig):
    name = "apps.adaptations"
    verbose_name = "Adaptations"
