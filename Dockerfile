# The demo project as a production image: docs/deployment.md, "Docker and compose".
#
#   docker build -t aixyz-sessions-demo .
#   docker compose up          # with a .env made from deploy/.env.example

# Builder: everything pip needs, and the project installed into a venv that the
# runtime stage copies whole. Every dependency ships manylinux wheels for amd64
# and arm64; add `apt-get install build-essential` here if yours compiles.
FROM python:3.11-slim AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# The package alone first: this layer (the slow one) is rebuilt only when the
# app or its dependencies change, not for every edit of the demo or the docs.
COPY pyproject.toml README.md ./
COPY aixyz_sessions ./aixyz_sessions
# prometheus: the demo's settings turn /metrics on (AIXYZ_METRICS), and
# `check` refuses that without prometheus-client (aixyz_sessions.E301).
# Your project: pip install "aixyz-sessions[redis,postgres,serve,prometheus]"
# and your own requirements (add otel and opentelemetry-sdk with an exporter
# if your settings configure tracing: docs/operations.md).
RUN pip install ".[redis,postgres,serve,prometheus]"

# Runtime: the venv and the demo's sources, no compiler, no pip cache.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    DJANGO_SETTINGS_MODULE=demo_project.settings_production \
    STATIC_ROOT=/app/static \
    PORT=8000
RUN groupadd --system app \
    && useradd --system --gid app --home-dir /app --no-create-home --shell /usr/sbin/nologin app
COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
# Owned by root: the server's user can read its code but not change it.
COPY manage.py ./
COPY demo_project ./demo_project
COPY deploy ./deploy
RUN chmod 0755 deploy/entrypoint.sh \
    && mkdir -p /app/static \
    && chown app:app /app/static
USER app
EXPOSE 8000
# No curl in slim images. The Host header is the public origin's: Django answers
# 400 to a host that ALLOWED_HOSTS does not name. /healthz is exempt from the
# HTTPS redirect; urlopen raises (exit 1) on anything but a 2xx.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.parse as p, urllib.request as r; r.urlopen(r.Request('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8000'), headers={'Host': p.urlsplit(os.environ['X402_ORIGIN']).netloc}), timeout=4)"]
ENTRYPOINT ["/app/deploy/entrypoint.sh"]
