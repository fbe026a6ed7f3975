# Made btf/mini.btf (the btf and btf_archive targets' seed): the types netpoll-trace
# reads, cut out of a real vmlinux BTF into a small valid BTF (other member types become
# one int; what a kernel without CONFIG_NETPOLL lacks is added in 6.1's shape).
#   python3 make_btf_seed.py /sys/kernel/btf/vmlinux > btf/mini.btf
import struct, sys
data = open(sys.argv[1], 'rb').read()
magic, ver, flags, hdr_len, toff, tlen, soff, slen = struct.unpack_from('<HBBIIIII', data, 0)
T = data[hdr_len+toff:hdr_len+toff+tlen]; S = data[hdr_len+soff:hdr_len+soff+slen]
def name(o): return S[o:S.index(b'\0', o)].decode()
types = [None]; off = 0
while off < len(T):
    no, info, sz = struct.unpack_from('<III', T, off); start = off; off += 12
    vlen = info & 0xffff; kind = (info >> 24) & 0x1f
    extra = {1:4,14:4,17:4,3:12,4:12*vlen,5:12*vlen,6:8*vlen,19:12*vlen,13:8*vlen,15:12*vlen}.get(kind, 0)
    types.append((kind, no, info, sz, T[off:off+extra])); off += extra
strs = bytearray(b'\0'); smap = {}
def s(o):
    if o == 0: return 0
    n = name(o)
    if n not in smap: smap[n] = len(strs); strs.extend(n.encode() + b'\0')
    return smap[n]
out = []  # raw type records, new ids start at 1
out.append(struct.pack('<IIII', s_int := 0, (1 << 24), 4, 32))  # int, 32 bits
INT = 1
idmap = {}
def emit_comp(tid):
    if tid in idmap: return idmap[tid]
    kind, no, info, sz, extra = types[tid]
    members = []
    for i in range(info & 0xffff):
        mno, mt, moff = struct.unpack_from('<III', extra, 12*i)
        # follow typedef/const/volatile to see if an anonymous composite sits behind
        t = mt
        while types[t] and types[t][0] in (8, 9, 10): t = types[t][3]
        nt = emit_comp(t) if (mno == 0 and types[t] and types[t][0] in (4, 5)) else INT
        members.append((s(mno), nt, moff))
    if name(no) == 'net_device_ops' and not any(m[0] == smap.get('ndo_poll_controller') for m in members):
        # CONFIG_NETPOLL's two ops, absent from a kernel without it: after the others
        members += [(sn('ndo_poll_controller'), INT, sz * 8), (sn('ndo_netpoll_setup'), INT, sz * 8 + 64)]
        info = (info & ~0xffff) | len(members); sz += 16
    idx = len(out); out.append(None); idmap[tid] = idx + 1
    rec = struct.pack('<III', s(no), info, sz) + b''.join(struct.pack('<III', *m) for m in members)
    out[idx] = rec
    return idx + 1
def sn(n):
    if n not in smap: smap[n] = len(strs); strs.extend(n.encode() + b'\0')
    return smap[n]
def find(kind, nm):
    return next((i for i, t in enumerate(types) if t and t[0] == kind and t[1] and name(t[1]) == nm and (kind not in (4, 5) or t[2] & 0xffff)), None)
for st in ('net_device', 'net_device_ops', 'netpoll'):
    if find(4, st) is not None: emit_comp(find(4, st))
    elif st == 'netpoll':  # not in a kernel without CONFIG_NETPOLL: its 6.1 shape, by hand
        ms = [('dev', 0), ('dev_name', 128), ('name', 256)]
        out.append(struct.pack('<III', sn('netpoll'), (4 << 24) | len(ms), 96) + b''.join(struct.pack('<III', sn(n), INT, o) for n, o in ms))
en = next(i for i, t in enumerate(types) if t and t[0] in (6, 19) and any(name(struct.unpack_from('<I', t[4], j)[0]) == 'IFF_DISABLE_NETPOLL' for j in range(0, len(t[4]), 8 if t[0] == 6 else 12)))
kind, no, info, sz, extra = types[en]
step = 8 if kind == 6 else 12
vals = b''.join(struct.pack('<I', s(struct.unpack_from('<I', extra, j)[0])) + extra[j+4:j+step] for j in range(0, len(extra), step))
out.append(struct.pack('<III', s(no), info, sz) + vals)
out.append(struct.pack('<III', 0, 13 << 24, INT))  # FUNC_PROTO returning int, no params
proto = len(out)
for f in ('netpoll_setup', '__netpoll_setup', 'netpoll_poll_dev'):
    out.append(struct.pack('<III', sn(f), (12 << 24) | 1, proto))
tb = b''.join(out)
hdr = struct.pack('<HBBIIIII', 0xeb9f, 1, 0, 24, 0, len(tb), len(tb), len(strs))
sys.stdout.buffer.write(hdr + tb + bytes(strs))
