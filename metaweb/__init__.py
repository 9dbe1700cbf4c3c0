"""MetaWeb's Django project, and its command line and Python client
(``metaweb.cli``, ``metaweb.client``).

Importing the package is light: it imports neither Django nor Celery nor torch, so
that a user's training script can ``import metaweb.client``. The Celery app is
loaded with Django instead (``metaweb.apps.MetaWebConfig.ready``), so that
``shared_task`` and ``.delay`` bind to it in the web process; ``celery -A metaweb``
finds it as ``metaweb.celery:app``.
"""
