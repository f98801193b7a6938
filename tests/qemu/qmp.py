#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""A small QMP client for hintmig's QEMU tests (python3 standard library only).

Library:
    with QMP("/tmp/x/src.qmp") as q:
        q.cmd("migrate-set-capabilities",
              {"capabilities": [{"capability": "postcopy-ram", "state": True}]})
        q.cmd("getfd", {"fdname": "migrate"}, fds=[sock.fileno()])
        print(q.hmp("info migrate"))
        ev = q.wait_event("MIGRATION", timeout=10)

Command line (one QMP session per call; QEMU's -qmp socket serves one client
at a time, so calls from a script must not overlap):
    qmp.py SOCK cmd NAME [KEY=STRING | KEY:=JSON]... [--field PATH]...
          prints the reply as JSON, or the --field values (dotted paths,
          e.g. ram.transferred) on one line; --default X for missing ones
    qmp.py SOCK hmp 'info migrate'
    qmp.py SOCK caps NAME=on|off...          migrate-set-capabilities
    qmp.py SOCK migrate-fd HOST:PORT [--fdname migrate] [--resume]
          connects to HOST:PORT itself, hands the socket to QEMU with getfd
          (SCM_RIGHTS) and sends migrate uri=fd:NAME, as libvirt does
    qmp.py SOCK wait-migrate --until S[,S...] [--abort S,...] [--within T]
          polls query-migrate; prints "STATUS seen=S1,S2,..."; exit 0 when a
          status of --until is reached, 1 on an --abort status (default
          failed,cancelled,completed unless listed in --until), 2 on timeout
    qmp.py DST_SOCK postcopy-recover --source SRC_SOCK --uri URI
          [--pause source|destination] [--source-param KEY=INT]... [--within T]
          pauses a postcopy migration (migrate-pause), waits for both sides
          to be postcopy-paused, then migrate-recover URI on the destination
          (exec-oob) and migrate URI resume=true on the source; see
          postcopy_recover() for what the destination needs
    qmp.py SOCK events [--for T] [--name NAME]
          prints events (one JSON object a line) for T seconds
    qmp.py free-port                          a free TCP port on 127.0.0.1

Exit status: 0 on success, 1 on a QMP error reply (its class and description
on stderr), 2 on a timeout, 3 on a connection failure, 4 when --field names
nothing.
"""

import argparse
import json
import os
import socket
import sys
import time

__all__ = ["QMP", "QMPError", "QMPCommandError", "QMPTimeout", "free_port",
           "postcopy_recover"]


class QMPError(Exception):
    """Connection or protocol failure."""


class QMPTimeout(QMPError):
    """No answer within the deadline."""


class QMPCommandError(QMPError):
    """QEMU answered a command with an error object."""

    def __init__(self, command, error):
        self.command = command
        self.error_class = error.get("class", "?")
        self.desc = error.get("desc", "?")
        super().__init__(f"{command}: {self.error_class}: {self.desc}")


class QMP:
    """One QMP session on a unix socket; events are kept in self.events."""

    def __init__(self, path, timeout=30.0, connect_timeout=10.0, oob=False):
        self.path = path
        self.oob = oob
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.sock = None
        self.buf = b""
        self.events = []
        self.greeting = None
        self._id = 0

    # -- connection --------------------------------------------------------

    def connect(self):
        """Connects (retrying while the socket is not there yet), reads the
        greeting and leaves capabilities negotiation mode."""
        deadline = time.monotonic() + self.connect_timeout
        while True:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(self.path)
                break
            except (FileNotFoundError, ConnectionRefusedError) as e:
                s.close()
                if time.monotonic() >= deadline:
                    raise QMPError(f"cannot connect to {self.path}: {e}") from e
                time.sleep(0.1)
        self.sock = s
        # QEMU's socket chardev serves one client at a time: a second client
        # waits for the greeting until the first one disconnects.
        self.greeting = self._read_message(time.monotonic() + self.timeout)
        if "QMP" not in self.greeting:
            raise QMPError(f"not a QMP greeting: {self.greeting!r}")
        if self.oob:
            if "oob" not in self.greeting["QMP"].get("capabilities", []):
                raise QMPError(f"{self.path}: QEMU offers no out-of-band execution")
            self.cmd("qmp_capabilities", {"enable": ["oob"]})
        else:
            self.cmd("qmp_capabilities")
        return self

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def __enter__(self):
        return self.connect()

    def __exit__(self, *exc):
        self.close()

    # -- wire --------------------------------------------------------------

    def _read_message(self, deadline):
        """Next JSON object from QEMU (one per line)."""
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise QMPTimeout(f"no message from {self.path} in time")
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except socket.timeout as e:
                raise QMPTimeout(f"no message from {self.path} in time") from e
            if not data:
                raise QMPError(f"{self.path}: connection closed by QEMU")
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        line = line.strip()
        if not line:
            return self._read_message(deadline)
        try:
            return json.loads(line)
        except ValueError as e:
            raise QMPError(f"bad JSON from QEMU: {line[:200]!r}") from e

    def _send(self, obj, fds=()):
        data = json.dumps(obj).encode() + b"\n"
        self.sock.settimeout(self.timeout)
        if fds:
            # The fds ride on the same message as the command; QEMU's
            # chardev keeps the last fds received for getfd / add-fd.
            anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                    b"".join(int(fd).to_bytes(4, sys.byteorder) for fd in fds))]
            sent = self.sock.sendmsg([data], anc)
            data = data[sent:]
        if data:
            self.sock.sendall(data)

    # -- API ---------------------------------------------------------------

    def cmd(self, name, args=None, fds=(), timeout=None, oob=False):
        """Runs a command and returns its "return" value; raises
        QMPCommandError on an error reply.  Events read meanwhile go to
        self.events.  oob=True sends it with exec-oob (the session must
        have been opened with oob=True): QEMU runs it in the monitor's own
        thread, even while its main thread is blocked, which a postcopy
        destination's may be (a vCPU holding the big lock waits for a page
        that cannot come while the migration is paused)."""
        self._id += 1
        ident = f"hm{self._id}"
        msg = {"exec-oob" if oob else "execute": name, "id": ident}
        if args:
            msg["arguments"] = args
        self._send(msg, fds)
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            m = self._read_message(deadline)
            if "event" in m:
                self.events.append(m)
                continue
            if m.get("id") != ident:
                continue
            if "error" in m:
                raise QMPCommandError(name, m["error"])
            return m.get("return")

    def hmp(self, command_line):
        """An HMP command through human-monitor-command; returns its text."""
        return self.cmd("human-monitor-command",
                        {"command-line": command_line})

    def set_caps(self, caps):
        """caps: {name: bool}; one migrate-set-capabilities for all, since
        QEMU checks them together (free-page-hint needs hintmig)."""
        self.cmd("migrate-set-capabilities",
                 {"capabilities": [{"capability": k, "state": bool(v)}
                                   for k, v in caps.items()]})

    def wait_event(self, name, timeout, match=None):
        """Returns the first event NAME (already received or arriving within
        timeout) whose data contains every key/value of match."""
        deadline = time.monotonic() + timeout
        match = match or {}

        def ok(ev):
            data = ev.get("data", {})
            return ev["event"] == name and all(data.get(k) == v
                                               for k, v in match.items())
        while True:
            for i, ev in enumerate(self.events):
                if ok(ev):
                    return self.events.pop(i)
            m = self._read_message(deadline)
            if "event" in m:
                self.events.append(m)

    def wait_migrate(self, until, abort=(), timeout=60.0, interval=0.25,
                     on_poll=None):
        """Polls query-migrate until its status is in `until`.  Returns
        (status, seen statuses in order, last query-migrate reply); raises
        QMPTimeout, or returns early with an `abort` status."""
        deadline = time.monotonic() + timeout
        seen = []
        while True:
            info = self.cmd("query-migrate")
            st = info.get("status", "none")
            if not seen or seen[-1] != st:
                seen.append(st)
            if on_poll:
                on_poll(info)
            if st in until or st in abort:
                return st, seen, info
            if time.monotonic() >= deadline:
                raise QMPTimeout(f"query-migrate still '{st}' after {timeout:g}s "
                                 f"(seen {','.join(seen)})")
            time.sleep(interval)


def postcopy_recover(dst, src, uri, pause="source", timeout=60.0,
                     src_params=None, log=lambda m: None):
    """Pauses a postcopy migration and resumes it on a new channel, as a
    management application does after a network failure.

    dst must be a session opened with oob=True *before* the pause (QEMU
    handles qmp_capabilities, like every in-band command, in its main
    thread, which may be blocked from then on), and the destination must
    have the events capability on: its state is read from MIGRATION events,
    since query-migrate is in-band too.  src is a normal session.  pause is
    "source" (migrate-pause there) or "destination" (migrate-pause with
    exec-oob there).  src_params: migrate-set-parameters applied on the
    source before the resume (the resumed channel takes
    max-postcopy-bandwidth)."""
    if pause == "source":
        src.cmd("migrate-pause")
    else:
        dst.cmd("migrate-pause", oob=True)
    log(f"migrate-pause on the {pause}")
    st, seen, _ = src.wait_migrate(["postcopy-paused"],
                                   ["completed", "failed", "cancelled"], timeout)
    if st != "postcopy-paused":
        raise QMPError(f"source: {st} instead of postcopy-paused (seen {','.join(seen)})")
    log("source: postcopy-paused")
    dst.wait_event("MIGRATION", timeout, {"status": "postcopy-paused"})
    log("destination: postcopy-paused (MIGRATION event)")
    dst.cmd("migrate-recover", {"uri": uri}, oob=True)
    log(f"destination: migrate-recover {uri}")
    if src_params:
        src.cmd("migrate-set-parameters", src_params)
    src.cmd("migrate", {"uri": uri, "detach": True, "resume": True})
    log(f"source: migrate {uri} resume=true")


def free_port(host="127.0.0.1"):
    """A TCP port nobody listens on right now (bind to port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _parse_kv(items):
    """KEY=STRING and KEY:=JSON words into a dict (httpie's convention)."""
    out = {}
    for it in items:
        eq = it.find("=")
        if eq > 0 and it[eq - 1] == ":":
            k, v = it[:eq - 1], it[eq + 1:]
            try:
                out[k] = json.loads(v)
            except ValueError:
                raise SystemExit(f"qmp.py: bad JSON in {it!r}")
        elif "=" in it:
            k, v = it.split("=", 1)
            out[k] = v
        else:
            raise SystemExit(f"qmp.py: expected KEY=VALUE or KEY:=JSON, got {it!r}")
    return out


def _field(obj, path):
    for part in path.split("."):
        if isinstance(obj, dict) and part in obj:
            obj = obj[part]
        elif isinstance(obj, list) and part.isdigit() and int(part) < len(obj):
            obj = obj[int(part)]
        else:
            raise KeyError(path)
    return obj


def main(argv=None):
    p = argparse.ArgumentParser(
        description="Minimal QMP client (see the module docstring).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 2)[2])
    p.add_argument("--timeout", type=float, default=30.0,
                   help="seconds to wait for a reply (default 30)")
    p.add_argument("--connect-timeout", type=float, default=10.0,
                   help="seconds to retry while the socket is not up (default 10)")
    p.add_argument("sock", help="QMP unix socket path, or free-port")
    p.add_argument("action", nargs="?", help="cmd, hmp, caps, migrate-fd, "
                   "wait-migrate, postcopy-recover, events")
    p.add_argument("rest", nargs=argparse.REMAINDER)
    a = p.parse_args(argv)

    if a.sock == "free-port":
        print(free_port())
        return 0
    if not a.action:
        p.error("missing action")

    sub = argparse.ArgumentParser(prog=f"qmp.py SOCK {a.action}")
    if a.action == "cmd":
        sub.add_argument("name")
        sub.add_argument("args", nargs="*")
        sub.add_argument("--field", action="append",
                         help="print only this dotted path of the reply "
                              "(repeatable: values on one line, space-separated)")
        sub.add_argument("--default",
                         help="printed for a --field the reply lacks")
    elif a.action == "hmp":
        sub.add_argument("line")
    elif a.action == "caps":
        sub.add_argument("caps", nargs="+", metavar="NAME=on|off")
    elif a.action == "migrate-fd":
        sub.add_argument("addr", metavar="HOST:PORT")
        sub.add_argument("--fdname", default="migrate")
        sub.add_argument("--resume", action="store_true")
    elif a.action == "wait-migrate":
        sub.add_argument("--until", required=True)
        sub.add_argument("--abort")
        sub.add_argument("--interval", type=float, default=0.25)
        sub.add_argument("--within", type=float, default=120.0)
    elif a.action == "postcopy-recover":
        sub.add_argument("--source", required=True, metavar="SRC_SOCK")
        sub.add_argument("--uri", required=True)
        sub.add_argument("--pause", choices=("source", "destination"),
                         default="source")
        sub.add_argument("--source-param", action="append", default=[],
                         metavar="KEY=INT")
        sub.add_argument("--within", type=float, default=60.0)
    elif a.action == "events":
        sub.add_argument("--name")
        sub.add_argument("--for", dest="duration", type=float, default=5.0)
    else:
        p.error(f"unknown action {a.action!r}")
    s = sub.parse_args(a.rest)

    try:
        with QMP(a.sock, timeout=a.timeout, connect_timeout=a.connect_timeout,
                 oob=(a.action == "postcopy-recover")) as q:
            if a.action == "postcopy-recover":
                params = {}
                for kv in s.source_param:
                    k, _, v = kv.partition("=")
                    params[k] = int(v)
                with QMP(s.source, timeout=a.timeout,
                         connect_timeout=a.connect_timeout) as src:
                    postcopy_recover(q, src, s.uri, s.pause, s.within, params,
                                     log=lambda m: print(m, flush=True))
            elif a.action == "cmd":
                ret = q.cmd(s.name, _parse_kv(s.args))
                if s.field:
                    vals = []
                    for f in s.field:
                        try:
                            v = _field(ret, f)
                            vals.append(v if isinstance(v, str) else json.dumps(v))
                        except KeyError:
                            if s.default is None:
                                print(f"qmp.py: no {f} in the reply",
                                      file=sys.stderr)
                                return 4
                            vals.append(s.default)
                    print(" ".join(vals))
                else:
                    print(json.dumps(ret))
            elif a.action == "hmp":
                sys.stdout.write(q.hmp(s.line).replace("\r\n", "\n"))
            elif a.action == "caps":
                caps = {}
                for c in s.caps:
                    k, _, v = c.partition("=")
                    if v not in ("on", "off", "true", "false"):
                        raise SystemExit(f"qmp.py: caps wants NAME=on|off, got {c!r}")
                    caps[k] = v in ("on", "true")
                q.set_caps(caps)
            elif a.action == "migrate-fd":
                host, _, port = s.addr.rpartition(":")
                conn = socket.create_connection((host, int(port)), timeout=10)
                try:
                    q.cmd("getfd", {"fdname": s.fdname}, fds=[conn.fileno()])
                finally:
                    # QEMU holds its own copy of the descriptor now.
                    conn.close()
                q.cmd("migrate", {"uri": f"fd:{s.fdname}", "detach": True,
                                  "resume": s.resume})
            elif a.action == "wait-migrate":
                until = s.until.split(",")
                if s.abort is None:
                    abort = [x for x in ("failed", "cancelled", "completed")
                             if x not in until]
                else:
                    abort = [x for x in s.abort.split(",") if x]
                try:
                    st, seen, _ = q.wait_migrate(until, abort, s.within,
                                                 s.interval)
                except QMPTimeout as e:
                    print(f"timeout: {e}")
                    return 2
                print(f"{st} seen={','.join(seen)}")
                return 0 if st in until else 1
            elif a.action == "events":
                end = time.monotonic() + s.duration
                q.events.clear()
                while True:
                    try:
                        m = q._read_message(end)
                    except QMPTimeout:
                        break
                    if "event" in m and (not s.name or m["event"] == s.name):
                        print(json.dumps(m), flush=True)
    except QMPCommandError as e:
        print(f"qmp.py: {e}", file=sys.stderr)
        return 1
    except QMPTimeout as e:
        print(f"qmp.py: timeout: {e}", file=sys.stderr)
        return 2
    except (QMPError, OSError) as e:
        print(f"qmp.py: {a.sock}: {e}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
