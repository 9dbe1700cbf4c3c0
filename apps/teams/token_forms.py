"""The token settings form. It parses input only; ``api_token_create`` decides."""

from __future__ import annotations

from django import forms
from django.conf import settings

from apps.teams.models import Team, TokenScope


class TokenCreateForm(forms.Form):
    name = forms.CharField(max_length=80, label="Name", help_text="What it is for, e.g. 'laptop CLI'.")
    team = forms.ModelChoiceField(queryset=Team.objects.none(), label="Team", empty_label=None)
    scope = forms.ChoiceField(choices=TokenScope.choices, initial=TokenScope.READ, label="Scope")
    expires_in_days = forms.IntegerField(initial=90, label="Expires after (days)")

    def __init__(self, *args: object, teams: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.fields["team"].queryset = teams  # type: ignore[attr-defined]
        self.fields["expires_in_days"].help_text = f"1 to {settings.API_TOKEN_MAX_DAYS} days."
