#!/bin/sh
# The image's entrypoint (Dockerfile, compose.yaml); runs outside Docker too.
#
# Without arguments: check the configuration, migrate, collect static files,
# then replace this shell with uvicorn (so it is PID 1 and gets the stop signal).
# With arguments: run them instead, with nothing before them, so that a one-off
# command (`manage.py check --deploy` to see what is wrong, a claim worker)
# works even when the server itself would refuse to start.
set -eu

cd "$(dirname "$0")/.."
: "${DJANGO_SETTINGS_MODULE:=demo_project.settings_production}"
export DJANGO_SETTINGS_MODULE

if [ "$#" -gt 0 ]; then
    if [ "$1" = "manage.py" ]; then
        exec python "$@"
    fi
    exec "$@"
fi

# Metrics under several workers: each keeps its figures in files here, summed at
# scrape time (prometheus-client's multiprocess mode). Files of an earlier run
# would be counted again: start without them. Only prometheus-client's own
# files are removed, and only from a directory that holds nothing else, so a
# mistaken value (the app, a volume, /) is refused instead of wiped.
: "${PROMETHEUS_MULTIPROC_DIR:=${TMPDIR:-/tmp}/aixyz-metrics}"
export PROMETHEUS_MULTIPROC_DIR
case "$PROMETHEUS_MULTIPROC_DIR" in
    /?*) ;;
    *)
        echo "entrypoint: PROMETHEUS_MULTIPROC_DIR must be an absolute path other than /," \
            "not '$PROMETHEUS_MULTIPROC_DIR'" >&2
        exit 2
        ;;
esac
mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
if [ -n "$(find "$PROMETHEUS_MULTIPROC_DIR" -mindepth 1 -maxdepth 1 ! -name '*.db' -print)" ]; then
    echo "entrypoint: $PROMETHEUS_MULTIPROC_DIR holds more than prometheus-client's files:" \
        "give PROMETHEUS_MULTIPROC_DIR an empty directory of its own" >&2
    exit 2
fi
find "$PROMETHEUS_MULTIPROC_DIR" -mindepth 1 -maxdepth 1 -type f -name '*.db' -exec rm -f {} +

# First, before the database is touched: a warning is a failure here, so a
# server never starts with a setting `check --deploy` would flag.
python manage.py check --deploy --fail-level WARNING
# Several hosts starting at once may race on migrations: run them once
# (`docker compose run --rm web manage.py migrate`) and set DJANGO_MIGRATE=0.
if [ "${DJANGO_MIGRATE:-1}" != "0" ]; then
    python manage.py migrate --noinput
fi
if [ -n "${STATIC_ROOT:-}" ]; then
    python manage.py collectstatic --noinput --verbosity 0
fi

# BIND_HOST, not HOST: zsh and some CI shells set HOST to the machine's name.
exec python -m uvicorn demo_project.asgi:application \
    --host "${BIND_HOST:-0.0.0.0}" \
    --port "${PORT:-8000}" \
    --workers "${WEB_CONCURRENCY:-2}" \
    --proxy-headers \
    --forwarded-allow-ips "${FORWARDED_ALLOW_IPS:-127.0.0.1}"
