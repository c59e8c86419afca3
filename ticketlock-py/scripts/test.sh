#!/usr/bin/env bash
# The Python tests of ticketlock-py, from a fresh clone: makes a venv under
# ticketlock-py/target/, installs maturin, pytest, redis (the client Rasa's
# RedisLockStore needs), PyYAML (read by the tests' stand-in of Rasa's
# endpoint reader) and this package with `pip install ./ticketlock-py`
# (maturin builds the wheel), fetches the rasa==3.6.21 wheel (whose lock
# store code the tests run; nothing of it is kept in the repository) and
# runs pytest. Any failure, or no test run at all, fails the script.
#
# Needs python3 (3.9+) with venv and pip, cargo, and redis-server on PATH
# (the tests start their own on free ports; under CI=true a missing one is a
# failure). Extra arguments go to pytest.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target="$here/target"
venv="$target/venv"
wheel_dir="$target/rasa-wheel"
python="${PYTHON:-python3}"

if ! command -v "$python" >/dev/null; then
    echo "test.sh: $python not found; install Python 3.9 or later" >&2
    exit 1
fi
if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip --disable-pip-version-check -q)
"${pip[@]}" install "maturin>=1.7,<2" "pytest>=7" "redis>=4" "PyYAML>=6"
# The build backend is maturin (pyproject.toml); its own target dir is
# ticketlock-py/target, kept between runs.
"${pip[@]}" install --force-reinstall --no-deps "$here"

if ! ls "$wheel_dir"/rasa-3.6.21-*.whl >/dev/null 2>&1; then
    mkdir -p "$wheel_dir"
    # Rasa 3.6 declares Python < 3.11; only its pure-Python files are used.
    "${pip[@]}" download --no-deps --only-binary=:all: --python-version 3.10 \
        -d "$wheel_dir" "rasa==3.6.21"
fi
TICKETLOCK_RASA_WHEEL="$(ls "$wheel_dir"/rasa-3.6.21-*.whl | head -n1)"
export TICKETLOCK_RASA_WHEEL

cd "$here"
rc=0
"$venv/bin/python" -m pytest -p no:cacheprovider "$@" tests || rc=$?
if [ "$rc" -eq 5 ]; then
    echo "test.sh: pytest collected no tests" >&2
    exit 1
fi
exit "$rc"
