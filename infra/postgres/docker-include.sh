#!/bin/sh
# Run once by the postgres image's entrypoint, when it initialises the data volume: from then on the
# server reads the repository's settings (infra/postgres/postgresql.conf, mounted read-only).
echo "include_if_exists = '/etc/postgresql/order-service.conf'" >> "$PGDATA/postgresql.conf"
