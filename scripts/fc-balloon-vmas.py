#!/usr/bin/env python3
# Counts on the real kernel the VMAs a Firecracker file-backed restore ends in after the
# balloon, replaying the mappings of a generated one-region scenario (`thpsim gen
# firecracker-file-restore --balloon P --host`): a PROT_NONE reservation, the memory file
# mapped MAP_FIXED|MAP_PRIVATE|MAP_NORESERVE at a 2 MiB boundary with MADV_HUGEPAGE, then every
# `mmap balN LEN anon private rw at=ram0+OFF` as discard_range's MAP_FIXED|MAP_ANONYMOUS|
# MAP_PRIVATE (advised again under --balloon-readvise), counting the lines of /proc/self/maps
# in the guest range. Touches no page and no knob; the scenario's header states the count the
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
    regions = re.findall(r'^mmap ram(\d+) (\S+) mem private', src, re.M)
    if len(regions) != 1:
        sys.exit(f'{path}: one region (ram0) expected, found {len(regions)}')
    guest = size(regions[0][1])
    readvise = '--balloon-readvise' in src.split('\n', 1)[0]
    with tempfile.NamedTemporaryFile(dir='/var/tmp') as f:
        f.truncate(guest)
        res = libc.mmap(None, guest + M2, PROT_NONE, MAP_PRIVATE | MAP_ANON | MAP_NORESERVE, -1, 0)
        base = (res + M2 - 1) & ~(M2 - 1)
        if libc.mmap(base, guest, PROT_RW, MAP_FIXED | MAP_PRIVATE | MAP_NORESERVE, f.fileno(), 0) != base:
            sys.exit(f'file mmap failed: errno {ctypes.get_errno()}')
        libc.madvise(base, guest, MADV_HUGEPAGE)

        def count():
            n = 0
            for line in open('/proc/self/maps'):
                a, b = (int(x, 16) for x in line.split()[0].split('-'))
                n += a < base + guest and b > base
            return n

        print('VMAs after the restore:', count())
        for m in re.finditer(r'^mmap bal\d+ (\S+) anon private rw at=ram0\+(\S+)', src, re.M):
            ln, off = size(m.group(1)), size(m.group(2))
            if libc.mmap(base + off, ln, PROT_RW, MAP_FIXED | MAP_PRIVATE | MAP_ANON, -1, 0) != base + off:
                sys.exit(f'remap at +{off:#x} failed: errno {ctypes.get_errno()}')
            if readvise:
                libc.madvise(base + off, ln, MADV_HUGEPAGE)
        print('VMAs after the balloon:', count())


if __name__ == '__main__':
    main(sys.argv[1])
