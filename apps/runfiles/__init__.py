"""Run files in one store: checkpoints, registry copies, adapted weights.

``STORAGES["runfiles"]`` (``metaweb/settings/storage.py``) is the local data folder
by default, or an S3-compatible object store shared by the web and any number of
worker machines. :mod:`.keys` builds every key from database ids (never from user
input); :mod:`.store` reads and writes them and turns a store failure into
:class:`~apps.runfiles.store.StoreUnavailable`, a message that names the store;
:mod:`.checkpoints` uploads a run's checkpoints (write, then point) and fetches the
newest one onto the machine that resumes the run; :mod:`.folders` publishes and
fetches registry folders. Torch-free: the web process imports it.
"""
