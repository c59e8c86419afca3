#!/bin/bash
# Server instructions per uncontended lock+release cycle of the PostgreSQL
# store's SQL, against the bench's bare-transaction baseline (BENCHMARKS.md,
# "PostgreSQL store"). Deterministic, unlike times on a shared machine: a
# single-user `postgres --single` runs the statements (each parsed, planned
# and committed on its own, as the unnamed statements of the store and the
# bench are) under callgrind; a cycle costs the difference between N = 1500
# and N = 500 cycles over 1000.
#
#   scripts/pg_server_cost.sh [ours|record|base]...   (as root; needs valgrind)
#
# ours: the store's calls; record: the calls of schema version 2's builds
# (`SELECT ... FROM ticketlock_issue(...)`), to measure an older checkout's
# SQL; base: the bench's baseline. The functions are this checkout's
# `ticketlock/src/postgres/sql`, or those of the folder SQL names
# (`git archive b3c5f4c ticketlock/src/postgres/sql | tar -x -C /tmp/old`).
set -euo pipefail
PG=${PG:-/usr/lib/postgresql/15/bin}
SQL=${SQL:-$(cd "$(dirname "$0")/../ticketlock/src/postgres/sql" && pwd)}
DIR=$(mktemp -d /tmp/ticketlock-pg-cost.XXXXXX)
chown postgres "$DIR"
as_pg() { setpriv --reuid=postgres --regid=postgres --clear-groups -- "$@"; }
as_pg "$PG/initdb" -D "$DIR/data" -A trust -U postgres -N >/dev/null
for f in upgrade schema common issue try_acquire release renew check update save delete; do
    cat "$SQL/$f.sql"
    echo ';'
done > "$DIR/schema.sql"
echo 'CREATE TABLE ticketlock_bench_baseline (n bigserial PRIMARY KEY, id text NOT NULL);' >> "$DIR/schema.sql"
chmod 644 "$DIR/schema.sql"
as_pg "$PG/postgres" --single -D "$DIR/data" -j postgres < "$DIR/schema.sql" > "$DIR/schema.log" 2>&1
if grep -q ERROR "$DIR/schema.log"; then
    cat "$DIR/schema.log" >&2
    exit 1
fi

# The statements of n cycles of $1, on fresh ids tagged $2.
cycles() {
    local kind=$1 n=$2 tag=$3
    [ "$kind" = base ] && echo 'TRUNCATE ticketlock_bench_baseline RESTART IDENTITY;'
    for i in $(seq 1 "$n"); do
        case $kind in
        ours)
            echo "SELECT ticketlock_issue_packed('cost-$tag-$i', 60000000, 1000);"
            echo "SELECT ticketlock_release('cost-$tag-$i', 0, -1);" ;;
        record)
            echo "SELECT number, epoch, status, value, remaining_us FROM ticketlock_issue('cost-$tag-$i', 60000000, 1000);"
            echo "SELECT ticketlock_release('cost-$tag-$i', 0, -1);" ;;
        base)
            echo "INSERT INTO ticketlock_bench_baseline (id) VALUES ('cost-$tag-$i') RETURNING n;"
            echo "DELETE FROM ticketlock_bench_baseline WHERE n = $i;" ;;
        *) echo "unknown kind $kind (ours, record or base)" >&2; exit 2 ;;
        esac
    done
}

collected() {
    cycles "$1" "$2" "$RANDOM$RANDOM" > "$DIR/in.sql"
    chmod 644 "$DIR/in.sql"
    as_pg valgrind --tool=callgrind --callgrind-out-file="$DIR/callgrind.$1.$2" \
        "$PG/postgres" --single -D "$DIR/data" postgres < "$DIR/in.sql" 2>&1 >/dev/null |
        grep -o 'Collected : [0-9]*' | awk '{print $3}'
}

for kind in "${@:-ours base}"; do
    for k in $kind; do
        a=$(collected "$k" 500)
        b=$(collected "$k" 1500)
        echo "$k: $(((b - a) / 1000)) server instructions per lock+release cycle"
    done
done
echo "(profiles in $DIR)"
