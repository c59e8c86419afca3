#!/usr/bin/env bash
# Every test of the project, as the README gives it: the Rust workspace
# (`cargo test --workspace`; Redis and PostgreSQL tests start their own
# servers), then the Python package's pytest suite (ticketlock-py builds its
# wheel into a venv of its own under ticketlock-py/target/). Arguments go to
# `cargo test`. Fails when either fails.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo test --workspace "$@"
bash ticketlock-py/scripts/test.sh
