"""Settings shared by every environment. Everything comes from the environment,
with safe production defaults: DEBUG is off unless asked, SECRET_KEY is required
outside dev, cookies are secure behind TLS.

Without DATABASE_URL and REDIS_URL the app runs self-contained (``make run``):
SQLite, Celery's in-memory broker with an embedded worker, and the in-memory
channel layer. With them it uses PostgreSQL and Redis, and workers run as their
own processes.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlparse

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from metaweb.settings.storage import storages_setting, store_label

BASE_DIR = Path(__file__).resolve().parent.parent.parent


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    if value.lower() in {"1", "true", "yes", "on"}:
        return True
    if value.lower() in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name}: expected a boolean (1/0, true/false), got {value!r}")


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name}: expected an integer, got {value!r}") from None


def env_list(name: str, default: list[str]) -> list[str]:
    value = os.environ.get(name)
    if not value:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


DEBUG = env_bool("DJANGO_DEBUG", False)
DEV = env_bool("METAWEB_DEV", False)

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "")
if not SECRET_KEY:
    if DEBUG or DEV:
        SECRET_KEY = "dev-only-insecure-key-do-not-use-in-production"  # noqa: S105
    else:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY: required outside dev. Set it, or set METAWEB_DEV=1 for local use."
        )

_LOCAL_HOSTS = ["127.0.0.1", "localhost", "[::1]"]
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", _LOCAL_HOSTS if (DEBUG or DEV) else [])
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

# Behind a TLS-terminating proxy: trust its header and keep cookies secure.
BEHIND_TLS = env_bool("METAWEB_BEHIND_TLS", not (DEBUG or DEV))
if BEHIND_TLS:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env_int("METAWEB_HSTS_SECONDS", 3600)
SESSION_COOKIE_HTTPONLY = True
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "template_partials",
    "channels",
    "axes",
    "csp",
    "metaweb.apps.MetaWebConfig",
    "apps.teams",
    "apps.tasksets",
    "apps.experiments",
    "apps.registry",
    "apps.adaptations",
    "apps.reviews",
    "apps.api",  # no models: its management command writes the client's types
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "metaweb.middleware.HtmxErrorMiddleware",
    "apps.teams.middleware.LastTeamMiddleware",
    # Last, as django-axes asks: it turns a lockout into the lockout page.
    "axes.middleware.AxesMiddleware",
]

# Content-Security-Policy (django-csp): scripts, styles, fonts and fetches from this
# origin only; no inline script or style (templates set sizes through data attributes,
# static/js/app.js), no plugins, no framing. 'self' in connect-src covers the page's
# own ws:/wss: origin (CSP level 3). img-src allows data: for the empty favicon.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}

# Login throttling (django-axes), on /accounts/login/ and /admin/login/ alike: after
# AXES_FAILURE_LIMIT failures a username is locked out, and so is an IP address,
# each on its own, for AXES_COOLOFF_TIME; a success resets the count.
AUTHENTICATION_BACKENDS = [
    "apps.teams.auth_backends.LoginThrottleBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("METAWEB_LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("METAWEB_LOGIN_LOCKOUT_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/lockout.html"
AXES_CLIENT_IP_CALLABLE = "metaweb.client_ip.client_ip"

ROOT_URLCONF = "metaweb.urls"
WSGI_APPLICATION = None
ASGI_APPLICATION = "metaweb.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "apps.teams.context_processors.teams",
            ],
        },
    }
]

# Data: the database, uploads and checkpoints live under METAWEB_DATA_DIR.
# Paths below it are built from database ids only, never from user input.
DATA_DIR = Path(os.environ.get("METAWEB_DATA_DIR", BASE_DIR / "var"))
MEDIA_ROOT = DATA_DIR / "media"
RUNS_DIR = DATA_DIR / "runs"
# Run files and task-set uploads: the data folder, or an S3-compatible object store
# (METAWEB_STORAGE_URL, see metaweb/settings/storage.py). Workers on other machines
# share the store; their DATA_DIR is then a scratch folder and a cache.
STORAGE_URL = os.environ.get("METAWEB_STORAGE_URL", "").strip()
STORAGE_LABEL = store_label(STORAGE_URL)
STORAGES = storages_setting(
    STORAGE_URL,
    staticfiles="django.contrib.staticfiles.storage.StaticFilesStorage",
)

DATABASE_URL = os.environ.get("DATABASE_URL", "")
if not DATABASE_URL:
    # The self-contained default keeps its SQLite file in the data folder; a fresh
    # checkout has none yet.
    DATA_DIR.mkdir(parents=True, exist_ok=True)
#: SQLite as the embedded default runs it (the web process and its worker thread write
#: concurrently): wait for locks, take the write lock up front, WAL journal.
SQLITE_OPTIONS = {
    "timeout": 20,
    "transaction_mode": "IMMEDIATE",
    "init_command": "PRAGMA journal_mode=WAL;",
}
DATABASES = {
    "default": dj_database_url.parse(DATABASE_URL, conn_max_age=60, conn_health_checks=True)
    if DATABASE_URL
    else {"ENGINE": "django.db.backends.sqlite3", "NAME": DATA_DIR / "db.sqlite3", "OPTIONS": SQLITE_OPTIONS}
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = os.environ.get("REDIS_URL", "")
# Embedded mode: no Redis, so Celery runs in-process on the memory broker.
EMBEDDED_WORKER = not REDIS_URL

if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            # Redis pub/sub: a group message is published once, and each web process
            # subscribed to the group gets it once and hands it to its local sockets.
            # The list-based RedisChannelLayer sent one Redis message per socket (at 200
            # sockets on one run: p50 89 ms, p99 226 ms; see README "Platform figures").
            # Delivery is at most once, like any websocket: pages re-read the database.
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            # redis-py 8 closes idle sockets after 5 s by default; websockets would die with 1011.
            # Pub/sub channels ignore Redis's db number: two deployments (or test stacks) on
            # one Redis with different dbs would hear each other's ``run-<id>`` groups, so
            # the db is part of the prefix.
            "CONFIG": {
                "hosts": [{"address": REDIS_URL, "socket_timeout": None}],
                "prefix": "asgi-db" + (urlparse(REDIS_URL).path.strip("/") or "0"),
            },
        }
    }
else:
    # make run: in memory, cleaning and copying once per group message (metaweb/layers.py).
    CHANNEL_LAYERS = {"default": {"BACKEND": "metaweb.layers.FanoutInMemoryChannelLayer"}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"
MEDIA_URL = "/media-not-served/"

# Upload limits (bytes). Task-set data files are checked by the engine as well.
TASKSET_UPLOAD_MAX_BYTES = env_int("METAWEB_TASKSET_UPLOAD_MAX_BYTES", 20 * 1024 * 1024)
# A file a run keeps (its artifacts): at most this big, and this many a run. The ASGI
# body limit below caps an upload at the task-set limit too.
RUN_FILE_MAX_BYTES = min(env_int("METAWEB_RUN_FILE_MAX_BYTES", 20 * 1024 * 1024), TASKSET_UPLOAD_MAX_BYTES)
RUN_FILES_MAX = env_int("METAWEB_RUN_FILES_MAX", 100)
DATA_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
# The ASGI body limit (metaweb/bodylimit.py), checked before Django reads a byte:
# multipart bodies may carry one task-set upload plus 1 MiB of form fields and framing;
# any other body what Django would accept in memory anyway. The proxy uses the former.
REQUEST_BODY_MAX_BYTES_UPLOAD = TASKSET_UPLOAD_MAX_BYTES + 1024 * 1024
REQUEST_BODY_MAX_BYTES = DATA_UPLOAD_MAX_MEMORY_SIZE

# Celery: JSON only, ids only in messages, late acks, one task at a time per worker process.
CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_WORKER_CONCURRENCY = 1
# A broker blip must not kill a long run: it keeps training. Its ack is then lost and
# Redis redelivers the message only after visibility_timeout; run_claim ignores it.
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = False
CELERY_TASK_DEFAULT_QUEUE = "cpu"
CELERY_TASK_TIME_LIMIT = env_int("METAWEB_RUN_TIME_LIMIT", 24 * 3600)
CELERY_TASK_SOFT_TIME_LIMIT = CELERY_TASK_TIME_LIMIT - 60
# Longer than the longest run, so Redis does not redeliver a healthy long run;
# dead workers are found by the heartbeat watchdog instead.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": CELERY_TASK_TIME_LIMIT + 3600}
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

# What a run may cost, per queue (workers/metalearn/cost.py estimates it, torch-free):
# meta-parameters, activation memory per meta-batch, and bytes per checkpoint
# (parameters plus Adam's two moments). The launch form names the setting to lower.
_GIB = 1024**3
RUN_BUDGETS = {
    "cpu": {
        "parameters": env_int("METAWEB_CPU_MAX_PARAMETERS", 25_000_000),
        "activation_bytes": env_int("METAWEB_CPU_MAX_ACTIVATION_BYTES", 4 * _GIB),
        "checkpoint_bytes": env_int("METAWEB_CPU_MAX_CHECKPOINT_BYTES", 512 * 1024**2),
    },
    "gpu": {
        "parameters": env_int("METAWEB_GPU_MAX_PARAMETERS", 80_000_000),
        "activation_bytes": env_int("METAWEB_GPU_MAX_ACTIVATION_BYTES", 40 * _GIB),
        "checkpoint_bytes": env_int("METAWEB_GPU_MAX_CHECKPOINT_BYTES", 1 * _GIB),
    },
}

# Heartbeats: a running run's worker writes one every HEARTBEAT_SECONDS; the
# watchdog requeues a run silent for longer than HEARTBEAT_TIMEOUT_SECONDS.
HEARTBEAT_SECONDS = env_int("METAWEB_HEARTBEAT_SECONDS", 5)
HEARTBEAT_TIMEOUT_SECONDS = env_int("METAWEB_HEARTBEAT_TIMEOUT_SECONDS", 60)
#: Attempts a run may lose to a dead worker (an OOM kill, say) before the watchdog
#: fails it instead of requeuing it again: "Worker lost 3 times (last at step N)."
RUN_MAX_ATTEMPTS = env_int("METAWEB_RUN_MAX_ATTEMPTS", 3)
#: Runs each queue may have in flight (running, or sent to Celery and not yet started):
#: the queue's worker processes. Others wait in the database and get a slot in
#: fair-share order between teams (apps/experiments/services/scheduling.py).
RUN_DISPATCH_SLOTS = {
    "cpu": env_int("METAWEB_CPU_DISPATCH_SLOTS", 1),
    "gpu": env_int("METAWEB_GPU_DISPATCH_SLOTS", 1),
}
#: A run sent to Celery but not claimed after this long lost its message: sent again.
RUN_DISPATCH_CLAIM_SECONDS = env_int("METAWEB_RUN_DISPATCH_CLAIM_SECONDS", 300)
#: Site limits of the per-team quotas; a team's admins may set lower ones.
TEAM_MAX_ACTIVE_RUNS = env_int("METAWEB_TEAM_MAX_ACTIVE_RUNS", 50)
TEAM_MAX_STORED_BYTES = env_int("METAWEB_TEAM_MAX_STORED_BYTES", 20 * _GIB)
#: How old a team's measured stored bytes may be before a quota check measures again.
TEAM_STORAGE_MAX_AGE_SECONDS = env_int("METAWEB_TEAM_STORAGE_MAX_AGE_SECONDS", 60)
#: The most runs one sweep may make (a grid's product, or random samples).
SWEEP_MAX_RUNS = env_int("METAWEB_SWEEP_MAX_RUNS", 200)
WATCHDOG_INTERVAL_SECONDS = env_int("METAWEB_WATCHDOG_INTERVAL_SECONDS", 15)
#: A worker's database writes (claim, heartbeat, checkpoint, metrics, the final mark)
#: reconnect and retry for this long when the database goes away (workers/dbretry.py).
DB_RETRY_SECONDS = env_int("METAWEB_DB_RETRY_SECONDS", 30)
CELERY_BEAT_SCHEDULE = {
    "runs-watchdog": {"task": "workers.tasks.watchdog", "schedule": float(WATCHDOG_INTERVAL_SECONDS)},
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("METAWEB_LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

# -- JSON API (apps/api) ---------------------------------------------------------
#: Longest life of a personal access token, in days.
API_TOKEN_MAX_DAYS = env_int("METAWEB_API_TOKEN_MAX_DAYS", 365)
#: Requests per token (or per browser session's user) in a sliding window; then 429 + Retry-After.
API_RATE_LIMIT = os.environ.get("METAWEB_API_RATE_LIMIT", "600/min")
#: Page size of API lists (cursor pagination), and the most a client may ask for.
API_PAGE_SIZE = 50
API_PAGE_MAX = 200
# The rate-limit windows live in the cache: shared through Redis when there is one.
CACHES = (
    {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
    if REDIS_URL
    else {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
)
