"""A benchmark's Markdown record: the command that made it, when, on what machine and under what load."""

from __future__ import annotations

import datetime
import os
import platform
import shlex
import sys
from pathlib import Path


def machine_line() -> str:
    """CPU count, platform and the 1-minute load average: timings taken beside other jobs say so.

    >>> "load average" in machine_line()
    True
    """
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    busy = "shared and busy" if load > 0.5 * (os.cpu_count() or 1) else "quiet"
    return (f"{os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), {busy}: load average "
            f"{load:.1f} when the record was written")


def write_record(path: Path, title: str, body: str, note: str = "") -> None:
    """Write ``body`` (Markdown tables) under a header naming the command (this process's argv) and the machine."""
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    text = (f"# {title}\n\nRegenerate: `{command}`\n\nMeasured {when}; machine: {machine_line()}."
            + (f" {note}" if note else "") + "\n\n" + body.rstrip() + "\n")
    Path(path).write_text(text)
