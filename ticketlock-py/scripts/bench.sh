#!/usr/bin/env bash
# Runs python -m ticketlock.bench in the venv made by scripts/test.sh, with
# Rasa's lock store code (from the rasa==3.6.21 wheel that test.sh fetched)
# importable, so that Rasa's stores are measured in the same run. Run
# scripts/test.sh first. Extra arguments go to the benchmark.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="$here/target/venv/bin/python"
[ -x "$py" ] || { echo "bench.sh: run scripts/test.sh first (it makes the venv)" >&2; exit 1; }
rasa_dir="$(cd "$here/tests" && "$py" -c 'import rasa_code; print(rasa_code.install(remove_at_exit=False) or "")')"
[ -n "$rasa_dir" ] || { echo "bench.sh: the rasa wheel is missing: run scripts/test.sh first" >&2; exit 1; }
trap 'rm -rf "$rasa_dir"' EXIT
PYTHONPATH="$rasa_dir" "$py" -m ticketlock.bench "$@"
