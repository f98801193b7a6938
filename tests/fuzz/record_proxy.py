#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Records a migration: a TCP proxy on 127.0.0.1:LPORT that forwards to
127.0.0.1:DPORT and writes each connection's two directions to
OUT.N.fwd (source to destination) and OUT.N.ret.  Stop it with a signal.

Usage: record_proxy.py LPORT DPORT OUT
"""
import socket, sys, threading

if len(sys.argv) != 4:
    sys.exit(__doc__)
lport, dport, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(('127.0.0.1', lport)); ls.listen(4)
n = 0
def pump(a, b, f):
    with open(f, 'wb') as fh:
        while True:
            d = a.recv(65536)
            if not d:
                break
            fh.write(d); b.sendall(d)
    try: b.shutdown(socket.SHUT_WR)
    except OSError: pass
while True:
    c, _ = ls.accept()
    s = socket.create_connection(('127.0.0.1', dport))
    threading.Thread(target=pump, args=(c, s, '%s.%d.fwd' % (out, n))).start()
    threading.Thread(target=pump, args=(s, c, '%s.%d.ret' % (out, n))).start()
    n += 1
