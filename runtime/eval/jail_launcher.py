"""Enter the code sandbox's jail, then start the harness in it.

Run as `python -I jail_launcher.py CONFIG_JSON` by runtime/eval/sandbox.py. Standalone
(standard library only): `-I` keeps the package off its path. CONFIG_JSON holds:
  mode:     "root" (we are root: namespaces, then a fresh unprivileged uid) or
            "user" (not root: a user namespace of our own gives the rights to build the jail);
  root:     an empty directory that becomes the jail's root;
  work:     the run's working directory, the one place the candidate may write (/work inside);
  binds:    host directories shown read-only at the same path (system libraries, the interpreter);
  uid, gid: who the candidate runs as in root mode (a uid no other process uses);
  python:   the interpreter to start; argv: its arguments; env: its whole environment;
  limits:   [[RLIMIT_* name, soft, hard], ...] for the candidate; nproc: its process cap.

What the jail is: new mount, network, PID and IPC namespaces (and a user namespace in user
mode). The root is a read-only tmpfs holding only the binds, /work and four device files
(null, zero, random, urandom): no /proc, no /home, no /root, no results directory. The
network namespace has only a downed loopback. The candidate is PID 1 of its namespace, so
when it ends every process it made ends too, and it dies with this launcher (parent-death
signal). It runs with no capabilities, no_new_privs set, and RLIMIT_NPROC at the processes
its uid has (none beyond itself): fork, threads and subprocesses fail.
"""
import ctypes
import json
import os
import resource
import signal
import sys

CLONE_NEWNS, CLONE_NEWIPC, CLONE_NEWUSER = 0x00020000, 0x08000000, 0x10000000
CLONE_NEWPID, CLONE_NEWNET = 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x1, 0x2, 0x4, 0x8
MS_REMOUNT, MS_NOATIME, MS_NODIRATIME, MS_BIND = 0x20, 0x400, 0x800, 0x1000
MS_REC, MS_PRIVATE, MS_RELATIME = 0x4000, 0x40000, 0x200000
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38
SYS_MOUNT_SETATTR, AT_FDCWD, AT_RECURSIVE, MOUNT_ATTR_RDONLY = 442, -100, 0x8000, 0x1
DEVICES = ("null", "zero", "random", "urandom")
# flags a bind of an existing mount must keep when it is remounted (the kernel locks them)
_KEEP = ((os.ST_NOSUID, MS_NOSUID), (os.ST_NODEV, MS_NODEV), (os.ST_NOEXEC, MS_NOEXEC),
         (os.ST_NOATIME, MS_NOATIME), (os.ST_NODIRATIME, MS_NODIRATIME), (os.ST_RELATIME, MS_RELATIME))

libc = ctypes.CDLL(None, use_errno=True)


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


def check_rc(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def mount(src, target, fstype, flags: int, data=None) -> None:
    """mount(2); an OSError naming the mount when it fails."""
    enc = (lambda s: None if s is None else str(s).encode())
    check_rc(libc.mount(enc(src), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)),
           f"mount {src} on {target}")


def _read_only(path: str) -> None:
    """Make the bind at `path` and every mount below it read-only."""
    attr = _MountAttr(MOUNT_ATTR_RDONLY, 0, 0, 0)
    rc = libc.syscall(SYS_MOUNT_SETATTR, AT_FDCWD, path.encode(), AT_RECURSIVE, ctypes.byref(attr),
                       ctypes.sizeof(attr))
    if rc == 0:
        return
    # no mount_setattr (Linux < 5.12): remount the bind itself, keeping its locked flags
    keep = os.statvfs(path).f_flag
    flags = MS_REMOUNT | MS_BIND | MS_RDONLY
    for statvfs_flag, mount_flag in _KEEP:
        if keep & statvfs_flag:
            flags |= mount_flag
    mount(None, path, None, flags)


def _write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _enter_namespaces(mode: str) -> None:
    uid, gid = os.getuid(), os.getgid()
    flags = CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID | CLONE_NEWIPC
    if mode == "user":
        flags |= CLONE_NEWUSER
    check_rc(libc.unshare(flags), "unshare")
    if mode == "user":  # our own uid and gid only, the same inside: no root inside either
        _write("/proc/self/setgroups", "deny")
        _write("/proc/self/uid_map", f"{uid} {uid} 1")
        _write("/proc/self/gid_map", f"{gid} {gid} 1")
    mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing done here reaches the host


def _build_root(root: str, work: str, binds: list) -> None:
    mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1m")
    for host in binds:
        inside = root + host
        if os.path.islink(host):  # /bin -> usr/bin on a merged /usr
            os.makedirs(os.path.dirname(inside), exist_ok=True)
            os.symlink(os.readlink(host), inside)
            continue
        os.makedirs(inside, exist_ok=True)
        mount(host, inside, None, MS_BIND | MS_REC)
        _read_only(inside)
    os.mkdir(root + "/dev")
    for name in DEVICES:
        inside = f"{root}/dev/{name}"
        os.close(os.open(inside, os.O_CREAT | os.O_WRONLY, 0o666))
        mount(f"/dev/{name}", inside, None, MS_BIND)
    os.mkdir(root + "/work")
    mount(work, root + "/work", None, MS_BIND)
    mount(None, root, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
    os.chdir(root)
    os.chroot(".")
    os.chdir("/work")


def _become_candidate(config: dict) -> None:
    """In the child (PID 1 of the new namespace): limits, the candidate's uid, then exec."""
    for name, soft, hard in config["limits"]:
        resource.setrlimit(getattr(resource, name), (soft, hard))
    if config["mode"] == "root":
        os.setgroups([])
        os.setgid(config["gid"])
        os.setuid(config["uid"])
    resource.setrlimit(resource.RLIMIT_NPROC, (config["nproc"], config["nproc"]))
    check_rc(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(no_new_privs)")
    check_rc(libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl(pdeathsig)")
    os.execve(config["python"], [config["python"], *config["argv"]], config["env"])


def main() -> int:
    config = json.loads(sys.argv[1])
    try:
        _enter_namespaces(config["mode"])
        _build_root(config["root"], config["work"], config["binds"])
    except OSError as exc:
        print(f"latentray sandbox: cannot build the jail: {exc}", file=sys.stderr)
        return 125
    pid = os.fork()
    if pid == 0:
        try:
            _become_candidate(config)
        except BaseException as exc:  # never return into the launcher's code
            os.write(2, f"latentray sandbox: cannot start the candidate: {exc}\n".encode())
        os._exit(126)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: os.kill(pid, signal.SIGKILL))
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):  # end the same way, so the caller sees the signal
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        signal.signal(os.WTERMSIG(status), signal.SIG_DFL)
        os.kill(os.getpid(), os.WTERMSIG(status))
    return os.WEXITSTATUS(status) if os.WIFEXITED(status) else 1


if __name__ == "__main__":
    sys.exit(main())
