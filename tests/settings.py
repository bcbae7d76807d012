"""Settings for the test suite: SQLite in memory, the in-memory store.

The ``postgres`` database alias exists only when PostgreSQL answers on
127.0.0.1:5432; tests that use it call ``tests.services.need_postgres()``.
"""

from tests.services import PG_HOST, PG_PORT, postgres_up

SECRET_KEY = "tests-only-not-secret"
DEBUG = False
USE_TZ = True
#: The names the test servers answer to (Django's test client, loopback under uvicorn).
#: Not "*": a sign-in must name a host the server owns (see aixyz_sessions.hosts).
LOOPBACK_HOSTS = ["testserver", "127.0.0.1", "localhost", "[::1]"]
ALLOWED_HOSTS = LOOPBACK_HOSTS
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "aixyz_sessions",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
ROOT_URLCONF = "tests.urls"
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
if postgres_up():
    DATABASES["postgres"] = {
        "ENGINE": "django.db.backends.postgresql",
        "HOST": PG_HOST,
        "PORT": PG_PORT,
        "USER": "postgres",
        "NAME": "aixyz_sessions",
        "TEST": {"NAME": "test_aixyz_sessions"},
    }
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
