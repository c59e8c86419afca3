"""Rasa's lock store code, taken at test time from the rasa==3.6.21 wheel.

The wheel is found at $TICKETLOCK_RASA_WHEEL or in target/rasa-wheel/
(scripts/test.sh downloads it there with `pip download --no-deps`). Three
files are extracted, beside the stand-ins of tests/rasa_stubs/ for the small
modules they import, into a directory put first on sys.path.
"""

from __future__ import annotations

import atexit
import glob
import os
import shutil
import sys
import tempfile
import zipfile
from typing import Optional

HERE = os.path.dirname(os.path.abspath(__file__))
PACKAGE = os.path.dirname(HERE)
RASA_VERSION = "3.6.21"
FILES = ("rasa/core/lock_store.py", "rasa/core/lock.py", "rasa/shared/utils/common.py")


def find_wheel() -> Optional[str]:
    explicit = os.environ.get("TICKETLOCK_RASA_WHEEL")
    if explicit:
        return explicit
    found = sorted(glob.glob(os.path.join(PACKAGE, "target", "rasa-wheel", f"rasa-{RASA_VERSION}-*.whl")))
    return found[0] if found else None


def install(remove_at_exit: bool = True) -> Optional[str]:
    """Makes `import rasa.core.lock_store` load Rasa's code; returns the
    directory (removed when this process exits, unless told otherwise), or
    None when the wheel is missing."""
    wheel = find_wheel()
    if wheel is None or not os.path.exists(wheel):
        return None
    root = tempfile.mkdtemp(prefix="ticketlock-rasa-")
    if remove_at_exit:
        atexit.register(shutil.rmtree, root, True)
    shutil.copytree(os.path.join(HERE, "rasa_stubs", "rasa"), os.path.join(root, "rasa"))
    with zipfile.ZipFile(wheel) as z:
        for name in FILES:
            target = os.path.join(root, name)
            with z.open(name) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
    sys.path.insert(0, root)
    # Child processes of the tests (workers) find it too.
    os.environ["PYTHONPATH"] = root + os.pathsep + os.environ.get("PYTHONPATH", "")
    return root
