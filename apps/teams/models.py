from __future__ import annotations

from django.conf import settings
from django.db import models


class Role(models.TextChoices):
    """Viewers see; members launch, cancel, adapt and comment; admins manage members."""

    VIEWER = "viewer", "Viewer"
    MEMBER = "member", "Member"
    ADMIN = "admin", "Admin"

    @property
    def rank(self) -> int:
        return ROLE_RANK[self.value]

    def allows(self, required: Role) -> bool:
        return ROLE_RANK[self.value] >= ROLE_RANK[Role(required).value]


ROLE_RANK = {Role.VIEWER.value: 0, Role.MEMBER.value: 1, Role.ADMIN.value: 2}


class Team(models.Model):
    name = models.CharField(max_length=100)
    slug = models.SlugField(max_length=60, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # Quotas set by the team's admins, within the site's limits (None: the site's
    # limit); ``apps/teams/quotas.py`` checks them.
    max_active_runs = models.PositiveIntegerField(null=True, blank=True)
    max_stored_bytes = models.PositiveBigIntegerField(null=True, blank=True)
    #: Bytes of the team's files (run checkpoints, task-set uploads, registry copies,
    #: adapted weights) as last measured, and when.
    stored_bytes = models.PositiveBigIntegerField(default=0)
    stored_bytes_at = models.DateTimeField(null=True, blank=True)
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, through="Membership", related_name="teams")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(auto_now_add=True)
    #: When the user last opened one of the team's pages; ``/`` lands on the latest.
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["team", "user"], name="uniq_membership")]
        ordering = ["team", "user"]

    def __str__(self) -> str:
        return f"{self.user} in {self.team} as {self.role}"


class TokenScope(models.TextChoices):
    """What an API token may do: ``read`` gives at most viewer powers, ``write`` the user's role."""

    READ = "read", "Read"
    WRITE = "write", "Read and write"


class ApiToken(models.Model):
    """A personal access token for the JSON API, bound to one team.

    The secret is shown once at creation; only its SHA-256 is stored. ``prefix``
    (public, unique) finds the row, then the hash is compared in constant time.
    The token acts with its user's *current* role in ``team``, capped by ``scope``.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=80)
    scope = models.CharField(max_length=5, choices=TokenScope.choices, default=TokenScope.READ)
    prefix = models.CharField(max_length=16, unique=True)
    secret_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"
