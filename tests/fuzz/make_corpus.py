#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Builds the seed corpora (tests/fuzz/corpus/) from a recorded migration.

Usage: make_corpus.py FWD RET SRC_STATE OUTDIR

FWD and RET are the two directions of one real migration's connection, as
recorded by a TCP proxy between two build/hintmig-vm processes (16 MiB,
1 vCPU, virtio-balloon with free-page-hint, idle workload: see
record-corpus.sh, which runs all of this); SRC_STATE is the source VM's x-save-state file
after that migration (its balloon ring holds the round's real descriptor
chains).  Each payload harness gets the stream's messages of its kind.
"""
import hashlib, os, struct, sys

HELLO, RAM_BATCH, ROUND_END, DEVICE_STATE, VERIFY, COMPLETE, COMMIT, HINTED = 1, 2, 3, 4, 5, 6, 7, 8
HELLO_REPLY, ACK = 16, 17
MULTIFD_SYNC = 21
NPAGES = 4096


def messages(data):
    off = 0
    while off + 16 <= len(data):
        magic, ver, typ, seq, ln = struct.unpack_from('<IHHII', data, off)
        assert magic == 0x50574d48, 'not a hintmig stream'
        yield typ, seq, data[off:off + 16], data[off + 16:off + 16 + ln]
        off += 16 + ln


def put(outdir, harness, name, blob):
    d = os.path.join(outdir, harness)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), 'wb') as f:
        f.write(blob)


def multifd_split(msgs):
    """The stream after its hello as a source with two connections sends it:
    every other RAM batch on the second, and before any other message, if a
    batch went there since the last sync, MULTIFD_SYNC on both (the first
    batch goes on the second: a 16 MiB idle guest sends only one).  Returns
    fuzz_multifd's input: the main part's length (u32), main, second."""
    main, second, spread, epoch, n = [], [], False, 0, 0
    for typ, _, hdr, pl in msgs:
        if typ == HELLO:
            continue
        if typ == RAM_BATCH:
            n += 1
            (second if n % 2 == 1 else main).append(hdr + pl)
            spread |= n % 2 == 1
            continue
        if spread:
            epoch += 1
            sync = struct.pack('<IHHII', 0x50574d48, 1, MULTIFD_SYNC, 0, 4) + struct.pack('<I', epoch)
            main.append(sync)
            second.append(sync)
            spread = False
        main.append(hdr + pl)
    m, s = b''.join(main), b''.join(second)
    return struct.pack('<I', len(m)) + m + s


def main(fwd_path, ret_path, state_path, out):
    fwd = open(fwd_path, 'rb').read()
    ret = open(ret_path, 'rb').read()
    msgs = list(messages(fwd))
    rmsgs = list(messages(ret))
    w = lambda sel, name, blob: put(out, 'wire', name, bytes([sel]) + blob)

    # wire: one header per message type seen, and each small payload kind.
    seen = set()
    for typ, seq, hdr, pl in msgs + rmsgs:
        if typ not in seen:
            seen.add(typ)
            w(0, 'header-%d' % typ, hdr)
    for typ, seq, hdr, pl in msgs:
        if typ == HELLO:
            w(1, 'hello', pl)
            w(5, 'session', pl[16:24])
            w(8, 'uuid', b'6e2d1a3c-1111-4222-8333-444455556666')
        elif typ == VERIFY:
            w(7, 'digests-%d' % seq, bytes([16]) + pl)
    for i, (typ, seq, hdr, pl) in enumerate(rmsgs):
        if typ == HELLO_REPLY:
            w(2, 'hello-reply', pl)
        elif typ == ACK:
            w(3, 'ack-%d' % i, pl)
            w(4, 'peer-error-%d' % i, pl + b'destination: RAM verification failed')
    # A page request as the destination's fault thread sends one (postcopy),
    # for the first two pages of the first batch.
    first = next(pl for typ, _, _, pl in msgs if typ == RAM_BATCH)
    pfns = [struct.unpack_from('<Q', first, 16 + 8 * i)[0] >> 2 for i in range(2)]
    w(6, 'page-request', struct.pack('<HI', NPAGES, 2) + b''.join(struct.pack('<Q', p) for p in pfns))

    # runs: the HINTED payloads; the bitmap they make, for the bitmap mode.
    for i, (typ, seq, hdr, pl) in enumerate(msgs):
        if typ == HINTED:
            put(out, 'runs', 'hinted-%d' % i, b'\0' + struct.pack('<H', NPAGES) + pl)
            bits = bytearray(NPAGES // 8)
            count = struct.unpack_from('<I', pl, 4)[0]
            for r in range(count):
                pfn, n = struct.unpack_from('<QQ', pl, 8 + 16 * r)
                for p in range(pfn, pfn + n):
                    bits[p // 8] |= 1 << (p % 8)
            put(out, 'runs', 'bitmap-%d' % i,
                b'\1' + struct.pack('<HHH', NPAGES, 100, 300) + bytes(bits))

    # page_batch: the smallest batches of each encoding, and a mid-sized one.
    batches = sorted((pl for typ, _, _, pl in msgs if typ == RAM_BATCH), key=len)
    picked = {}
    for pl in batches:
        picked.setdefault(pl[6], []).append(pl)
    n = 0
    for enc, pls in sorted(picked.items()):
        for pl in pls[:3] + [pls[len(pls) // 2]]:
            if len(pl) <= 24 << 10:
                put(out, 'page_batch', 'batch-%d' % n, pl)
                n += 1

    # device_state: the state as reassembled from its parts.
    state = b''.join(pl for typ, _, _, pl in msgs if typ == DEVICE_STATE)
    put(out, 'device_state', 'vm-balloon-cpus', state)

    # receiver: the source's stream after its hello; the same without its
    # RAM batches; and its first 16 KiB.
    rest = b''.join(hdr + pl for typ, _, hdr, pl in msgs if typ != HELLO)
    put(out, 'receiver', 'stream', rest)
    put(out, 'receiver', 'stream-no-batches',
        b''.join(hdr + pl for typ, _, hdr, pl in msgs if typ not in (HELLO, RAM_BATCH)))
    put(out, 'receiver', 'stream-head', rest[:16 << 10])

    # multifd: the same stream over two connections; and its first 16 KiB.
    split = multifd_split(msgs)
    put(out, 'multifd', 'stream', split)
    put(out, 'multifd', 'stream-head', split[:16 << 10])

    # vmstate_file: the source's state file, its RAM cut to 16 KiB
    # (the harness sizes RAM from the header and appends the checksum).
    st = open(state_path, 'rb').read()
    slen = struct.unpack_from('<I', st, 24)[0]
    secs = st[28:28 + slen]
    ram = st[28 + slen:-32]
    for kib in (16,):
        size = kib << 10
        put(out, 'vmstate_file', 'state-%dk' % kib,
            st[:16] + struct.pack('<Q', size) + st[24:28] + secs + ram[:size])

    # virtqueue, balloon: the balloon driver's ring page and its page of
    # command ids, moved to 0x1000 and 0x2000; hint buffers stay where the
    # guest put them.  The ring's used index is set back so that the last
    # elements are available again.
    off, count = 4, struct.unpack_from('<I', secs, 0)[0]
    vb = None
    for _ in range(count):
        nl = struct.unpack_from('<I', secs, off)[0]
        name = secs[off + 4:off + 4 + nl]
        dl = struct.unpack_from('<I', secs, off + 4 + nl)[0]
        if name == b'virtio-balloon':
            vb = struct.unpack_from('<16Q', secs, off + 8 + nl)
        off += 8 + nl + dl
    qsize, desc, avail, used = vb[10], vb[11], vb[12], vb[13]
    ring = desc & ~0xfff
    page = bytearray(ram[ring:ring + 4096])
    avail_idx = struct.unpack_from('<H', page, avail - ring + 2)[0]
    ids_page = None
    for d in range(qsize):
        addr, ln, flags, nxt = struct.unpack_from('<QIHH', page, desc - ring + 16 * d)
        if ln == 4 and not flags:
            ids_page = addr & ~0xfff
            struct.pack_into('<Q', page, desc - ring + 16 * d, 0x2000 + (addr & 0xfff))
    image = bytearray(0x3000)
    image[0x1000:0x2000] = page
    image[0x2000:0x3000] = ram[ids_page:ids_page + 4096]
    for back in (1, 3, min(avail_idx, qsize)):
        img = bytearray(image)
        struct.pack_into('<H', img, 0x1000 + used - ring + 2, (avail_idx - back) & 0xffff)
        setup = struct.pack('<HHHH', qsize, 0x1000 + desc - ring, 0x1000 + avail - ring,
                            0x1000 + used - ring)
        put(out, 'virtqueue', 'ring-last-%d' % back, setup + bytes(img))
        # features FREE_PAGE_HINT|VERSION_1; actions: start, then passes;
        # the cmd id base one below the id the guest sent.
        put(out, 'balloon', 'ring-last-%d' % back,
            bytes([5, 1]) + setup + struct.pack('<II', 0, vb[4] - 1) + bytes(img))


if __name__ == '__main__':
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    main(*sys.argv[1:])
