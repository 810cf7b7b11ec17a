"""Making a folder unwritable for a test, as root too (root ignores permission bits)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path


def read_only(folder: Path) -> bool:
    """Make `folder` unwritable for this process; False when this machine cannot."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return True
    if shutil.which("chattr") is None:
        return False
    return subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode == 0


def writable(folder: Path) -> None:
    if os.geteuid() == 0:
        subprocess.run(["chattr", "-i", str(folder)], capture_output=True)
    folder.chmod(0o755)
