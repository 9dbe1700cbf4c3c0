"""The local store: the data folder (``settings.DATA_DIR``), as ``FileSystemStorage``
follows ``MEDIA_ROOT``: read when first used, and again after the setting changes
(tests give each test its own data folder)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.files.storage import FileSystemStorage
from django.utils.functional import cached_property


class DataFolderStorage(FileSystemStorage):
    """``FileSystemStorage`` rooted at ``settings.DATA_DIR``."""

    @cached_property
    def base_location(self) -> str:
        return self._value_or_setting(self._location, str(settings.DATA_DIR))

    def _clear_cached_properties(self, setting: str, **kwargs: Any) -> None:
        super()._clear_cached_properties(setting, **kwargs)
        if setting == "DATA_DIR":
            self.__dict__.pop("base_location", None)
            self.__dict__.pop("location", None)
