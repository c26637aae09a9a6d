"""Process plumbing for the launcher and the workers: parent-death signals, group kills, free ports."""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import sys

PR_SET_PDEATHSIG = 1


def set_parent_death_signal(sig: int = signal.SIGKILL) -> None:
    """Ask Linux to send ``sig`` to this process when its parent dies (no-op elsewhere)."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to process group ``pgid``; False when the group is already gone."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    return True


def exec_with_parent_death_signal(argv: list[str]) -> None:
    """Body of the tiny wrapper: set the parent-death signal, record our pid, exec ``argv``.

    The pid survives ``exec``, so the workers torchrun starts can check that their parent is
    still the agent they were started by.
    """
    set_parent_death_signal(signal.SIGKILL)
    if os.getppid() != int(os.environ.get("MLOPS_LAUNCHER_PID", os.getppid())):
        os._exit(1)  # the launcher died between fork and here
    os.environ["MLOPS_TORCHRUN_PID"] = str(os.getpid())
    os.execv(argv[0], argv)


if __name__ == "__main__":
    exec_with_parent_death_signal(sys.argv[1:])
