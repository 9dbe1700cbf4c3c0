from django.urls import path

app_name = "tasksets"

urlpatterns: list = []
