"""Types shared by every app's services and selectors."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

# The user a request carries: signed in, or not. Services and selectors check which.
AnyUser = AbstractBaseUser | AnonymousUser
