"""Stopping one worker thread of a herald process, to stall its loop
while the rest of the process runs on (tests of what a stalled or slow
worker must not cause)."""

import ctypes
import os
import time

PTRACE_DETACH, PTRACE_SEIZE, PTRACE_INTERRUPT = 17, 0x4206, 0x4207
WALL = 0x40000000


# epoll_wait, epoll_pwait, epoll_pwait2 (x86_64, aarch64)
EPOLL_SYSCALLS = {"x86_64": {232, 281, 441}, "aarch64": {22, 441}}.get(
    os.uname().machine, set())


class StoppedThread:
    """Stops one thread of another process (ptrace seize + interrupt: the
    other threads run on) until resume(). It is stopped only while it waits
    in epoll_wait, idle: stopped anywhere else it might hold a lock (the
    allocator's, a mailbox's) that the running threads then wait for. All
    calls from the thread that stopped it (ptrace's rule): the test's main
    thread."""

    def __init__(self, pid, tid):
        self.pid, self.tid = pid, tid
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p,
                                     ctypes.c_void_p]
        self.libc.ptrace.restype = ctypes.c_long
        self.stopped = False

    def _ptrace(self, req):
        if self.libc.ptrace(req, self.tid, None, None) != 0:
            e = ctypes.get_errno()
            raise OSError(e, "ptrace(%#x, %d): %s" % (req, self.tid, os.strerror(e)))

    def _syscall(self):
        with open("/proc/%d/task/%d/syscall" % (self.pid, self.tid)) as f:
            word = f.read().split()[0]
        return int(word) if word.lstrip("-").isdigit() else None

    def stop(self):
        assert EPOLL_SYSCALLS, "epoll syscall numbers unknown on %s" % os.uname().machine
        for _ in range(1000):
            self._ptrace(PTRACE_SEIZE)
            self._ptrace(PTRACE_INTERRUPT)
            os.waitpid(self.tid, WALL)
            self.stopped = True
            if self._syscall() in EPOLL_SYSCALLS:
                return self
            self.resume()          # busy: try again when it is idle
            time.sleep(0.002)
        raise AssertionError("thread %d never idle in epoll_wait" % self.tid)

    def resume(self):
        if self.stopped:
            self._ptrace(PTRACE_DETACH)
            self.stopped = False


def worker_tids(node):
    """{worker index: thread id} of a herald process (threads herald-w<i>)."""
    out = {}
    for tid in os.listdir("/proc/%d/task" % node.proc.pid):
        try:
            with open("/proc/%d/task/%s/comm" % (node.proc.pid, tid)) as f:
                name = f.read().strip()
        except OSError:
            continue
        if name.startswith("herald-w"):
            out[int(name[len("herald-w"):])] = int(tid)
    return out
