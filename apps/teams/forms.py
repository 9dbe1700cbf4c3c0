"""Forms of the team pages. They parse input only; the services decide."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from apps.teams.models import Role


def json_text_value(text: str) -> Any:
    """A form field's text parsed as JSON; ValidationError with the line at fault.
    Whether the value has the right shape is the service's rule."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValidationError(f"This is not valid JSON ({exc.msg}, line {exc.lineno}).") from None


def add_service_errors(
    form: forms.Form,
    error: ValidationError,
    *,
    aliases: Mapping[str, str] | None = None,
    subforms: Mapping[str, forms.Form] | None = None,
) -> None:
    """Put a service's ValidationError on the form: keys that name a field go on
    that field, any other key (or a plain message) becomes a form-wide error.

    ``aliases`` renames a service's key to the form field that holds it
    (``{"support": "support_text"}``); ``subforms`` sends ``<prefix>.<field>`` keys to
    another form on the same page (``{"params": params_form}``)."""
    if not hasattr(error, "error_dict"):
        form.add_error(None, error)
        return
    for key, messages in error.message_dict.items():
        target, field = _error_target(form, (aliases or {}).get(key, key), subforms or {})
        target.add_error(field, messages)


def _error_target(
    form: forms.Form, key: str, subforms: Mapping[str, forms.Form]
) -> tuple[forms.Form, str | None]:
    """The form and field (None: form-wide) that a service's error key lands on."""
    prefix, _, name = key.partition(".")
    if name and prefix in subforms:
        form, key = subforms[prefix], name
    return form, key if key in form.fields else None


class TeamCreateForm(forms.Form):
    name = forms.CharField(max_length=100, label="Team name")


class MemberAddForm(forms.Form):
    username = forms.CharField(max_length=150, label="Username")
    role = forms.ChoiceField(choices=Role.choices, initial=Role.MEMBER, label="Role")


class MemberRoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices, label="Role")


SITE_LIMIT_HELP = "Empty: the site's limit."


class TeamQuotaForm(forms.Form):
    """A team's own quotas; empty means the site's limit."""

    max_active_runs = forms.IntegerField(
        required=False, min_value=1, label="Runs queued or running at once", help_text=SITE_LIMIT_HELP
    )
    max_stored_gib = forms.FloatField(
        required=False, min_value=0.001, label="Stored files (GiB)", help_text=SITE_LIMIT_HELP
    )

    def stored_bytes(self) -> int | None:
        gib = self.cleaned_data.get("max_stored_gib")
        return None if gib is None else int(gib * 1024**3)
