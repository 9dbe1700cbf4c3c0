"""Adaptations and adapted models move to ``apps.adaptations``, reviews to
``apps.reviews``. Their rows stay: the tables are renamed to the new apps' names,
and the models leave this app's state only (the new apps' ``0001`` migrations add
them to theirs, without touching the database)."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("registry", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.AlterModelTable(name="review", table="reviews_review"),
                migrations.AlterModelTable(name="adaptedmodel", table="adaptations_adaptedmodel"),
                migrations.AlterModelTable(name="adaptation", table="adaptations_adaptation"),
            ],
            state_operations=[
                migrations.DeleteModel(name="Review"),
                migrations.DeleteModel(name="AdaptedModel"),
                migrations.DeleteModel(name="Adaptation"),
            ],
        ),
    ]
