#!/usr/bin/env python3
"""test_run_sigint.py SAMEPAGE MODEL: Ctrl-C in `samepage run`, through a
pseudo-terminal (the tty driver turns ^C into SIGINT, as for a user).

 - one-shot with --save: ^C after the first tokens stops the answer at a
   token boundary; the text so far and the statistics are printed, the
   snapshot is written, the exit status is 130, and `--resume` of the
   snapshot answers another prompt;
 - interactive: ^C mid-answer brings the prompt back, a second question is
   still answered by the same process, then ^D exits 0;
 - interactive: ^C at an empty prompt exits 0.
Exits 77 (skip) without the model."""
import os
import pty
import re
import select
import subprocess
import sys
import tempfile
import time

bin_path, model = sys.argv[1], sys.argv[2]
if not os.access(model, os.R_OK):
    print("SKIP: no model at %s" % model)
    sys.exit(77)

failures = 0


def check(name, ok, detail=""):
    global failures
    print("%s %s%s" % ("ok  " if ok else "FAIL", name, "" if ok or not detail else "\n     " + detail[-600:]))
    if not ok:
        failures += 1


class Pty:
    """A child on a pseudo-terminal of its own (its controlling terminal)."""

    def __init__(self, argv):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            try:
                os.execv(argv[0], argv)
            finally:
                os._exit(127)
        self.out = b""
        self.status = None

    def read_some(self, timeout):
        r, _, _ = select.select([self.fd], [], [], timeout)
        if not r:
            return False
        try:
            data = os.read(self.fd, 4096)
        except OSError:  # EIO: the child closed its side
            data = b""
        if not data:
            return None
        self.out += data
        return True

    def wait_for(self, pattern, since=0, timeout=60):
        """Reads until `pattern` (a regex on bytes) appears after offset `since`."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if re.search(pattern, self.out[since:]):
                return True
            if self.read_some(0.2) is None:
                return bool(re.search(pattern, self.out[since:]))
        return False

    def send(self, data):
        os.write(self.fd, data)

    def finish(self, timeout=60):
        """Reads to the end and returns the exit status (None if it hangs)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            eof = self.read_some(0.2) is None
            pid, st = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = os.waitstatus_to_exitcode(st)
                while self.read_some(0.1):
                    pass
                return self.status
            if eof:
                time.sleep(0.05)
        os.kill(self.pid, 9)
        os.waitpid(self.pid, 0)
        return None


def decoded(out):
    m = re.search(rb"decode (\d+) tokens", out)
    return int(m.group(1)) if m else -1


tmp = tempfile.mkdtemp()
snap = os.path.join(tmp, "stopped.snap")

# ---- one-shot: ^C after the first tokens ----
n_predict = 400
p = Pty([bin_path, "run", "--model", model, "-n", str(n_predict), "--temp", "0", "--save", snap,
         "Write a very long story about a dragon who learns to sing."])
got_tokens = p.wait_for(rb"\w+\W+\w+\W+\w+", timeout=60)  # a few words of the answer
check("one-shot: the answer starts streaming", got_tokens, p.out.decode(errors="replace"))
p.send(b"\x03")
rc = p.finish()
text = p.out.decode(errors="replace")
check("one-shot: ^C exits 130", rc == 130, "exit %s: %s" % (rc, text))
n = decoded(p.out)
check("one-shot: statistics printed, the answer cut short (%d of %d tokens)" % (n, n_predict), 0 < n < n_predict, text)
check("one-shot: --save written", os.path.getsize(snap) > 0 if os.path.exists(snap) else False, text)
r = subprocess.run([bin_path, "run", "--model", model, "--resume", snap, "-n", "4", "And then?"],
                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
check("one-shot: --resume of the stopped conversation answers",
      r.returncode == 0 and decoded(r.stderr) > 0 and b"resumed" in r.stderr,
      "exit %d: %s" % (r.returncode, r.stderr.decode(errors="replace")))

# ---- interactive: ^C mid-answer, a second question, then ^D ----
p = Pty([bin_path, "run", "--model", model, "-n", "200", "--temp", "0"])
check("interactive: a prompt", p.wait_for(rb"> ", timeout=60), p.out.decode(errors="replace"))
mark = len(p.out)
p.send(b"Write a very long story about a dragon who learns to sing.\n")
p.wait_for(rb"sing\.\r?\n", since=mark, timeout=10)  # the echo of the line
mark = len(p.out)
check("interactive: the answer starts streaming", p.wait_for(rb"\w+\W+\w+\W+\w+", since=mark, timeout=60),
      p.out.decode(errors="replace"))
p.send(b"\x03")
mark2 = len(p.out)
back = p.wait_for(rb"> ", since=mark2, timeout=30)
check("interactive: ^C mid-answer brings the prompt back", back and p.status is None,
      p.out.decode(errors="replace"))
alive = os.waitpid(p.pid, os.WNOHANG)[0] == 0
check("interactive: the process is still running", alive)
mark = len(p.out)
p.send(b"What is the dragon's name?\n")
p.wait_for(rb"name\?\r?\n", since=mark, timeout=10)
mark = len(p.out)
answered = p.wait_for(rb"\w+[\s\S]*> ", since=mark, timeout=120)
check("interactive: a second question is answered", answered, p.out[mark:].decode(errors="replace"))
p.send(b"\x04")
rc = p.finish()
check("interactive: ^D exits 0", rc == 0, "exit %s: %s" % (rc, p.out[-600:].decode(errors="replace")))
check("interactive: statistics at the end", decoded(p.out) > 0, p.out[-600:].decode(errors="replace"))

# ---- interactive: ^C at an empty prompt ----
p = Pty([bin_path, "run", "--model", model, "-n", "8", "--temp", "0"])
check("empty prompt: a prompt", p.wait_for(rb"> ", timeout=60), p.out.decode(errors="replace"))
p.send(b"\x03")
rc = p.finish()
check("empty prompt: ^C exits 0", rc == 0, "exit %s: %s" % (rc, p.out.decode(errors="replace")))

print("%s" % ("all passed" if not failures else "%d failed" % failures))
sys.exit(1 if failures else 0)
