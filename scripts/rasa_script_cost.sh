#!/bin/bash
# The Rasa layout's server cost per call, in instructions (callgrind), free
# of the noise of a shared machine:
#
#   scripts/rasa_script_cost.sh REV N [cycle|head]
#
# Starts redis-server under callgrind (port $PORT, default 16734), loads the
# scripts of REV and warms up with 50 calls, then counts N (see
# rasa_script_cost.py): the instructions per cycle (issue + release of a new
# conversation) or per call of the bare head. Active expiry is off and hz 1
# while counting, so that the wall time a run takes under valgrind does not
# add background work.
set -e
REV=$1; N=$2; MODE=${3:-cycle}; P=${PORT:-16734}
HERE=$(cd "$(dirname "$0")" && pwd)
D=$(mktemp -d)
valgrind --tool=callgrind --callgrind-out-file="$D/cg.out.%p" --instr-atstart=no \
  redis-server --port "$P" --bind 127.0.0.1 --save '' --appendonly no --dir "$D" >"$D/vg.log" 2>&1 &
VP=$!
for _ in $(seq 1 150); do redis-cli -p "$P" ping >/dev/null 2>&1 && break; sleep 0.2; done
PORT=$P python3 "$HERE/rasa_script_cost.py" "$REV" 50 "$MODE"
redis-cli -p "$P" config set hz 1 >/dev/null
redis-cli -p "$P" config set dynamic-hz no >/dev/null
redis-cli -p "$P" debug set-active-expire 0 >/dev/null
callgrind_control -i on "$VP" >/dev/null
NOLOAD=1 PORT=$P python3 "$HERE/rasa_script_cost.py" "$REV" "$N" "$MODE"
callgrind_control -i off "$VP" >/dev/null
callgrind_control -d "$VP" >/dev/null
sleep 0.5
redis-cli -p "$P" shutdown nosave >/dev/null 2>&1 || true
wait "$VP" || true
TOTAL=$(cat "$D"/cg.out.* | awk '/^totals:/ {s += $2} END {print s}')
echo "$REV $MODE N=$N instructions=$TOTAL per_$MODE=$((TOTAL / N))"
rm -rf "$D"
