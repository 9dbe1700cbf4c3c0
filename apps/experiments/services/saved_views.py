"""Saved views of the run list: a team's named searches with their columns and sort.

Members and admins create them; the creator or a team admin deletes them; every
member of the team, viewers included, sees and uses them.
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction

from apps.experiments.filters import SAVED_FILTERS, RunListFilterForm
from apps.experiments.listing.columns import ColumnError, column_parse, sort_parse
from apps.experiments.listing.selectors import saved_view_named
from apps.experiments.models import RunKind, SavedView
from apps.experiments.search import QueryError, run_search_q
from apps.experiments.selectors import KIND_ALL
from apps.teams.models import Role, Team
from apps.teams.services import ensure_role
from apps.teams.types import AnyUser

__all__ = ["saved_view_create", "saved_view_delete"]


def _filter_errors(team: Team, filters: dict[str, str]) -> dict[str, str]:
    """A message per filter that the run list would not apply (the list ignores a
    bad filter; a view must not keep one)."""
    unknown = [name for name in filters if name not in SAVED_FILTERS]
    if unknown:
        return {"filters": f"filters: {unknown[0][:20]!r} is not one of {', '.join(SAVED_FILTERS)}"}
    form = RunListFilterForm(filters, team=team)
    form.is_valid()
    return {name: f"{form.fields[name].label or name}: {' '.join(form.errors[name])}" for name in form.errors}


def _checked(
    *, team: Team, name: str, query: str, columns: list[str], sort: str, kind: str, filters: dict[str, str]
) -> dict[str, object]:
    """The view's fields, checked as the run list would read them; ValidationError
    naming each field that is wrong."""
    errors = _filter_errors(team, filters)
    max_length = SavedView._meta.get_field("name").max_length or 80
    if not name:
        errors["name"] = "Give the view a name."
    elif len(name) > max_length:
        errors["name"] = f"Use at most {max_length} characters."
    try:
        run_search_q(query=query)
    except QueryError as error:
        errors["query"] = f"query: {error}"
    try:
        names = [column_parse(column).name for column in columns]
        sort = sort_parse(sort).token if sort else ""
    except ColumnError as error:
        errors[error.param if error.param == "sort" else "columns"] = str(error)
        names = []
    if kind not in (*RunKind.values, KIND_ALL, ""):
        errors["kind"] = f"kind: {kind[:20]!r} is not one of {', '.join((*RunKind.values, KIND_ALL))}"
    if errors:
        raise ValidationError(errors)
    kept = {name: value for name, value in filters.items() if value}
    return {"name": name, "query": query, "columns": names, "sort": sort, "kind": kind, "filters": kept}


def saved_view_create(
    *,
    team: Team,
    actor: AnyUser,
    name: str,
    query: str = "",
    columns: list[str],
    sort: str = "",
    kind: str = "",
    filters: dict[str, str] | None = None,
) -> SavedView:
    """A new saved view in the team (members and admins). The name is unique in the
    team, ignoring case; the query, columns, sort and filters must be ones the list
    reads (``filters``: :data:`SAVED_FILTERS` as the query string spells them)."""
    ensure_role(user=actor, team=team, required=Role.MEMBER)
    fields = _checked(
        team=team,
        name=(name or "").strip(),
        query=query or "",
        columns=columns,
        sort=sort,
        kind=kind,
        filters=filters or {},
    )
    taken = ValidationError({"name": f"The team has a view called '{fields['name']}' already."})
    if saved_view_named(team=team, name=str(fields["name"])) is not None:
        raise taken
    try:
        with transaction.atomic():
            return SavedView.objects.create(team=team, created_by=actor, **fields)
    except IntegrityError as error:  # a view of that name saved meanwhile
        raise taken from error


def saved_view_delete(*, saved_view: SavedView, actor: AnyUser) -> None:
    """Delete ``saved_view``: its creator (while a member or admin) or a team admin."""
    role = ensure_role(user=actor, team=saved_view.team_id, required=Role.MEMBER)
    if saved_view.created_by_id != actor.pk and not role.allows(Role.ADMIN):
        raise PermissionDenied("Only the view's creator or a team admin may delete it.")
    saved_view.delete()
