"""Forms of the team pages. They parse input only; the services decide."""

from __future__ import annotations

from django import forms
from django.core.exceptions import ValidationError

from apps.teams.models import Role


def add_service_errors(form: forms.Form, error: ValidationError) -> None:
    """Put a service's ValidationError on the form: keys that name a field go on
    that field, any other key (or a plain message) becomes a form-wide error."""
    if not hasattr(error, "error_dict"):
        form.add_error(None, error)
        return
    for field, errors in error.message_dict.items():
        form.add_error(field if field in form.fields else None, errors)


class TeamCreateForm(forms.Form):
    name = forms.CharField(max_length=100, label="Team name")


class MemberAddForm(forms.Form):
    username = forms.CharField(max_length=150, label="Username")
    role = forms.ChoiceField(choices=Role.choices, initial=Role.MEMBER, label="Role")


class MemberRoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices, label="Role")
