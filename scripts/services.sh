#!/usr/bin/env bash
# Make sure the services the integration tests use are up: Redis on
# 127.0.0.1:6379 and PostgreSQL on 127.0.0.1:5432. A stopped service that is
# installed here gets started. With CI=true a service that stays down fails
# the run; elsewhere its tests skip with a reason.
set -u

port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && exec 3>&- 3<&-
}

wait_port() {
    for _ in $(seq 1 30); do
        port_open "$1" && return 0
        sleep 0.5
    done
    return 1
}

missing=""

if ! port_open 6379; then
    if command -v redis-server >/dev/null 2>&1; then
        echo "services: starting Redis on 127.0.0.1:6379"
        mkdir -p /tmp/aixyz-redis
        redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" \
            --appendonly no --dir /tmp/aixyz-redis --logfile /tmp/aixyz-redis/redis.log \
            >/dev/null 2>&1 || true
        wait_port 6379 || missing="$missing redis"
    else
        missing="$missing redis"
    fi
fi

if ! port_open 5432; then
    if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
        echo "services: starting PostgreSQL on 127.0.0.1:5432"
        for version in $(ls /etc/postgresql); do
            pg_ctlcluster --skip-systemctl-redirect "$version" main start >/dev/null 2>&1 || true
        done
        wait_port 5432 || missing="$missing postgresql"
    else
        missing="$missing postgresql"
    fi
fi

if [ -n "$missing" ]; then
    if [ "${CI:-}" = "true" ]; then
        echo "services: not reachable under CI=true:$missing" >&2
        exit 1
    fi
    echo "services: not available here:$missing (their tests will skip)"
fi
exit 0
