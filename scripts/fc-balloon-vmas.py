#!/usr/bin/env python3
# Counts on the real kernel the VMAs a Firecracker file-backed restore ends in after the
# balloon, replaying the mappings of a generated scenario (`thpsim gen
# firecracker-file-restore --balloon P`, any size: the file is sparse and no page is touched):
# per region a PROT_NONE reservation, the memory file mapped MAP_FIXED|MAP_PRIVATE|MAP_NORESERVE
# at a 2 MiB boundary at the region's file offset with MADV_HUGEPAGE, then every
# `mmap balN LEN anon private rw at=ramI+OFF` as discard_range's MAP_FIXED|MAP_ANONYMOUS|
# MAP_PRIVATE (advised again under --balloon-readvise), counting the lines of /proc/self/maps
# in the guest ranges. Touches no page and no knob; the scenario's header states the count the
# generator derives. Usage (root not needed; take the host lock like any host run):
#   flock /tmp/thpsim-host.lock python3 scripts/fc-balloon-vmas.py scenarios/workloads/host/firecracker-file-restore-balloon-64M.thps
import ctypes, os, re, sys, tempfile

libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
PROT_NONE, PROT_RW = 0, 3
MAP_PRIVATE, MAP_FIXED, MAP_ANON, MAP_NORESERVE = 0x02, 0x10, 0x20, 0x4000
MADV_HUGEPAGE = 14
M2 = 2 << 20


def size(t):
    u = {'K': 1 << 10, 'M': 1 << 20, 'G': 1 << 30}
    return int(t[:-1]) * u[t[-1]] if t[-1] in u else int(t)


def main(path):
    src = open(path).read()
    regions = [(size(n), size(o) if o else 0) for n, o in
               re.findall(r'^mmap ram\d+ (\S+) mem private rw align=2M(?: foff=(\S+))?', src, re.M)]
    if not regions:
        sys.exit(f'{path}: no `mmap ramI SIZE mem private` line')
    readvise = '--balloon-readvise' in src.split('\n', 1)[0]
    with tempfile.NamedTemporaryFile(dir='/var/tmp') as f:
        f.truncate(sum(r for r, _ in regions))
        bases = []
        for r, foff in regions:
            res = libc.mmap(None, r + M2, PROT_NONE, MAP_PRIVATE | MAP_ANON | MAP_NORESERVE, -1, 0)
            base = (res + M2 - 1) & ~(M2 - 1)
            if libc.mmap(base, r, PROT_RW, MAP_FIXED | MAP_PRIVATE | MAP_NORESERVE, f.fileno(), foff) != base:
                sys.exit(f'file mmap failed: errno {ctypes.get_errno()}')
            libc.madvise(base, r, MADV_HUGEPAGE)
            bases.append(base)

        def count():
            n = 0
            for line in open('/proc/self/maps'):
                a, b = (int(x, 16) for x in line.split()[0].split('-'))
                n += any(a < base + r and b > base for base, (r, _) in zip(bases, regions))
            return n

        print('VMAs after the restore:', count())
        for m in re.finditer(r'^mmap bal\d+ (\S+) anon private rw at=ram(\d+)\+(\S+)', src, re.M):
            ln, i, off = size(m.group(1)), int(m.group(2)), size(m.group(3))
            at = bases[i] + off
            if libc.mmap(at, ln, PROT_RW, MAP_FIXED | MAP_PRIVATE | MAP_ANON, -1, 0) != at:
                sys.exit(f'remap at ram{i}+{off:#x} failed: errno {ctypes.get_errno()}')
            if readvise:
                libc.madvise(at, ln, MADV_HUGEPAGE)
        print('VMAs after the balloon:', count())


if __name__ == '__main__':
    main(sys.argv[1])
