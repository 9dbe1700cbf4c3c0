"""``/teams/{team}/saved-views``: the run list's saved views from scripts. List them,
save one (the page's "Save this view" rules: a name unique in the team, and a search,
columns, sort, kind and filters the run list reads), delete one (its creator or an
admin); ``GET .../runs?view=<name>`` (``apps/api/runs.py``) lists the runs a view
shows on the page."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from django.core.exceptions import ValidationError
from django.http import HttpRequest
from django.urls import reverse
from ninja import Router, Schema, Status
from pydantic import Field

from apps.api.auth import caller, team_for
from apps.api.runs import WRITE_ERRORS
from apps.api.schemas import MessageOut
from apps.experiments.filters import SAVED_FILTERS, saved_view_query
from apps.experiments.listing.selectors import saved_view_get_for_team, saved_view_list_for_team
from apps.experiments.models import SavedView
from apps.experiments.search import MAX_QUERY_LENGTH
from apps.experiments.services import saved_view_create, saved_view_delete
from apps.teams.models import Role, Team

router = Router(tags=["saved views"])


class SavedViewIn(Schema):
    name: str = Field(max_length=200, description="Unique in the team, ignoring case; at most 80 characters.")
    query: str = Field("", max_length=MAX_QUERY_LENGTH, description="The run search language.")
    columns: list[Annotated[str, Field(max_length=200)]] = Field(
        default_factory=list, max_length=50, description="Extra columns: config keys or final metrics."
    )
    sort: str = Field("", max_length=200, description="A column, '-' first for descending.")
    kind: str = Field("", max_length=10, description="`train` (the default), `adapt` or `all`.")
    filters: dict[str, Annotated[str, Field(max_length=200)]] = Field(
        default_factory=dict,
        max_length=len(SAVED_FILTERS) + 1,
        description=f"The run list's filters as its query string spells them: {', '.join(SAVED_FILTERS)}.",
    )


class SavedViewOut(Schema):
    id: int
    name: str
    query: str
    columns: list[str]
    sort: str
    kind: str
    filters: dict[str, str]
    list_url: str = Field(description="The run list showing the view, relative to the site.")
    created_by: str
    created_at: datetime


def saved_view_out(view: SavedView, team: Team) -> SavedViewOut:
    fields = view.list_fields()
    run_list = reverse("experiments:run-list", kwargs={"team_slug": team.slug})
    return SavedViewOut(
        id=view.pk,
        name=view.name,
        **fields,
        list_url=f"{run_list}?{saved_view_query(**fields)}",
        created_by=view.created_by.get_username(),
        created_at=view.created_at,
    )


@router.get("/teams/{team}/saved-views", response={200: list[SavedViewOut], 404: MessageOut})
def saved_view_list(request: HttpRequest, team: str) -> list[SavedViewOut]:
    """The team's saved views, by name."""
    the_team = team_for(request, team)
    return [saved_view_out(view, the_team) for view in saved_view_list_for_team(team=the_team)]


@router.post("/teams/{team}/saved-views", response={201: SavedViewOut, **WRITE_ERRORS})
def saved_view_save(request: HttpRequest, team: str, payload: SavedViewIn) -> Status:
    """Save a view for the whole team, checked as the run list reads it."""
    the_team = team_for(request, team, need=Role.MEMBER)
    try:
        view = saved_view_create(
            team=the_team,
            actor=caller(request).user,
            name=payload.name.strip(),
            query=payload.query,
            columns=payload.columns,
            sort=payload.sort,
            kind=payload.kind,
            filters=payload.filters,
        )
    except ValidationError as error:  # a filter's error is the body's filters.<name>
        if not hasattr(error, "error_dict"):
            raise
        renamed = {f"filters.{k}" if k in SAVED_FILTERS else k: v for k, v in error.message_dict.items()}
        raise ValidationError(renamed) from None
    return Status(201, saved_view_out(view, the_team))


@router.delete(
    "/teams/{team}/saved-views/{view_id}", response={200: MessageOut, 404: MessageOut, 403: MessageOut}
)
def saved_view_remove(request: HttpRequest, team: str, view_id: int) -> MessageOut:
    """Delete the view: its creator (a member or admin) or a team admin."""
    the_team = team_for(request, team, need=Role.MEMBER)
    view = saved_view_get_for_team(team=the_team, view_id=view_id)
    saved_view_delete(saved_view=view, actor=caller(request).user)
    return MessageOut(detail=f"Deleted the saved view {view.name!r}.")
