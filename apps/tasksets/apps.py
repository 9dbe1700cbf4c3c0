from django.apps import AppConfig


class TasksetsConfig(AppConfig):
    name = "apps.tasksets"
    verbose_name = "Task sets"
