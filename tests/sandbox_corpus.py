"""The hostile corpus: code a model could write that tries to leave the sandbox.

Each case prints ESCAPED only if its attack worked. Run in-process by
tests/test_eval_sandbox.py (as whoever runs the suite), and as a script by the same test
under an unprivileged uid:

    python tests/sandbox_corpus.py PORT SECRET_FILE   # prints {case: {"escaped": .., ...}} as JSON

PORT: a listener on 127.0.0.1 that the attacks try to reach; SECRET_FILE: a file in a
results directory the caller can read, which the attacks try to read.
"""
from __future__ import annotations

import json
import os
import sys
import time


def cases(port: int, secret_file: str) -> dict:
    outside = os.path.join(os.path.dirname(secret_file), "written-by-candidate")
    return {
        "raw socket through the base class": (
            "import socket\n"
            "s = socket.socket.__mro__[1](socket.AF_INET, socket.SOCK_STREAM)\n"
            f"s.settimeout(2)\ns.connect(('127.0.0.1', {port}))\nprint('ESCAPED')\n"),
        "subprocess": (
            "import subprocess\n"
            "out = subprocess.run(['/bin/sh', '-c', 'echo ESCAPED'], capture_output=True, text=True).stdout\n"
            "print(out)\n"),
        "os.system": "import os\nos.system('echo ESCAPED')\n",
        "writing outside the directory": (
            f"open({outside!r}, 'w').write('x')\nprint('ESCAPED')\n"),
        "writing to a system directory": "open('/usr/lib/latentray-escape', 'w').write('x')\nprint('ESCAPED')\n",
        "fork bomb": (
            "import os\nborn = 0\nfor _ in range(10000):\n    try:\n        if os.fork() == 0:\n"
            "            os._exit(0)\n        born += 1\n    except OSError:\n        pass\n"
            "if born:\n    print('ESCAPED', born)\n"),
        "thread": ("import threading\nt = threading.Thread(target=print, args=('ESCAPED',))\nt.start()\nt.join()\n"),
        "reading the results directory": f"print('ESCAPED', open({secret_file!r}).read())\n",
        "listing the results directory": (
            f"import os\nprint('ESCAPED', os.listdir({os.path.dirname(secret_file)!r}))\n"),
        "ctypes fork and connect": (
            "import ctypes, struct\nlibc = ctypes.CDLL(None, use_errno=True)\n"
            "if libc.fork() >= 0:\n    print('ESCAPED fork')\n"
            "fd = libc.socket(2, 1, 0)\n"
            f"addr = struct.pack('=H', 2) + struct.pack('!H', {port}) + bytes([127, 0, 0, 1]) + bytes(8)\n"
            "if fd >= 0 and libc.connect(fd, addr, len(addr)) == 0:\n    print('ESCAPED connect')\n"),
        "ctypes privileges": (
            "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
            "if libc.setuid(0) == 0 and libc.geteuid() == 0 and __import__('os').getuid() != 0:\n"
            "    print('ESCAPED setuid')\n"
            "if libc.unshare(0x10000000) == 0 and libc.unshare(0x00020000) == 0:\n    print('ESCAPED unshare')\n"),
        "other processes": (
            "import os\nseen = [p for p in os.listdir('/proc') if p.isdigit()]\nprint('ESCAPED', len(seen))\n"),
        # signal 0 only asks whether the evaluating process could be signalled (killed)
        "signalling the evaluator": f"import os\nos.kill({os.getpid()}, 0)\nprint('ESCAPED')\n",
    }


def run_corpus(port: int, secret_file: str) -> dict:
    from latentray.runtime.eval.sandbox import run_python

    out = {}
    for name, code in cases(port, secret_file).items():
        start = time.monotonic()
        result = run_python(code, timeout_s=5.0)
        out[name] = {"escaped": "ESCAPED" in result.stdout, "stdout": result.stdout[-300:],
                     "stderr": result.stderr[-300:], "seconds": round(time.monotonic() - start, 2)}
    out["_written_outside"] = os.path.exists(os.path.join(os.path.dirname(secret_file), "written-by-candidate"))
    return out


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from latentray.runtime.eval.sandbox import jail_mode

    report = run_corpus(int(sys.argv[1]), sys.argv[2])
    report["_jail"] = jail_mode()
    report["_uid"] = os.getuid()
    print(json.dumps(report))
