"""Run a command that gets a signal when the process that started it dies.

    python -I -S _die_with_parent.py PARENT_PID SIGNAL COMMAND [ARG...]

asks Linux to send SIGNAL when the parent dies (prctl PR_SET_PDEATHSIG, which survives
exec), checks that the parent is still PARENT_PID (it may have died before the prctl, and
then no signal would ever come), and execs COMMAND in its own place: same pid, same
process group, so the caller's pid is COMMAND's. ``server.local`` starts tritonserver
through it instead of setting the signal in a ``preexec_fn``, which Python documents as
unsafe while other threads run (the child may deadlock between fork and exec).

Standard library only, run as a file (not ``-m``) with ``-I -S``: nothing of the package
or of site-packages is imported, so it adds a bare interpreter's start-up to the launch.
"""

from __future__ import annotations

import ctypes
import os
import sys

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
EXEC_FAILED = 127  # as a shell reports a command it could not run


def main(argv: list[str]) -> int:
    if len(argv) < 4:
        sys.stderr.write(f"usage: {argv[0]} PARENT_PID SIGNAL COMMAND [ARG...]\n")
        return 2
    parent, signal_number, command = int(argv[1]), int(argv[2]), argv[3:]
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal_number, 0, 0, 0) != 0:
        error = ctypes.get_errno()
        sys.stderr.write(f"{argv[0]}: prctl(PR_SET_PDEATHSIG) failed ({os.strerror(error)}); "
                         f"{command[0]} will not stop by itself if its parent dies\n")
    elif os.getppid() != parent:
        sys.stderr.write(f"{argv[0]}: process {parent} ended before {command[0]} started; not starting it\n")
        return 1
    sys.stderr.flush()
    try:
        os.execv(command[0], command)
    except OSError as e:
        sys.stderr.write(f"{argv[0]}: could not run {command[0]}: {e}\n")
    return EXEC_FAILED


if __name__ == "__main__":
    sys.exit(main(sys.argv))
