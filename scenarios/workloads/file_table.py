# Re-derives the file-backed workload tables of docs/workloads.md (qemu-file-ram and
# firecracker-file-restore, 4 GiB guests): python3 scenarios/workloads/file_table.py
# (from the repository root, after `cargo build --release`; THPSIM=path overrides the binary).
import json, os, subprocess
T = os.environ.get('THPSIM', 'target/release/thpsim')
TMP = os.environ.get('TMPDIR', '/tmp') + '/thpsim-file-table.thps'

def run(workload, args, sets=()):
    src = subprocess.run([T, 'gen', workload] + args, capture_output=True, text=True, check=True).stdout
    open(TMP, 'w').write(src)
    out = subprocess.run([T, 'run', TMP, '--json'] + list(sets), capture_output=True, text=True).stdout
    return {c['label']: c for c in json.loads(out)['checkpoints']}

def counter(cps, label, key):
    c = cps.get(label)
    return 0 if c is None else c['counters'].get(key, 0)

def faults(cps, label):
    c = cps.get(label)
    return 0 if c is None else c['minflt'] + c['majflt']

def smaps(cps, label, field):
    total = 0
    for m in cps[label]['mappings']:
        total += m['smaps'].get(field, 0)
    return total // 1024

QEMU = [
    ("RAM, share=on, prealloc (POPULATE_WRITE), align 4K (default)", [], []),
    ("RAM, share=on, prealloc (POPULATE_WRITE), align 2M", ["--align", "2M"], []),
    ("RAM, share=on, POPULATE_READ, align 2M", ["--populate", "read", "--align", "2M"], []),
    ("RAM, share=on, no prealloc, align 2M", ["--populate", "none", "--align", "2M"], []),
    ("RAM, share=off, prealloc, align 2M", ["--share", "off", "--align", "2M"], []),
    ("fake NVDIMM, POPULATE_READ", ["--nvdimm", "--populate", "read"], []),
    ("fake NVDIMM, POPULATE_READ, guest writes nothing", ["--nvdimm", "--populate", "read", "--write-share", "0"], []),
    ("fake NVDIMM, prealloc (POPULATE_WRITE)", ["--nvdimm"], []),
    ("fake NVDIMM, POPULATE_READ under madv_populate=single", ["--nvdimm", "--populate", "read"], ["--set", "madv_populate=single"]),
]
print("| qemu-file-ram variant | prefault faults | guest faults | nr_dirtied by the prefault | nr_dirty before writeback | nr_written at writeback | faults of the writes after writeback | Rss / Anonymous (MiB) |")
print("|---|---|---|---|---|---|---|---|")
for name, args, sets in QEMU:
    c = run('qemu-file-ram', args, sets)
    dirty = counter(c, 'populated', 'vmstat.nr_dirty') + counter(c, 'guest', 'vmstat.nr_dirty')
    print(f"| {name} | {faults(c, 'populated')} | {faults(c, 'guest')} | {counter(c, 'populated', 'vmstat.nr_dirtied')} | {dirty} | {counter(c, 'writeback', 'vmstat.nr_written')} | {faults(c, 'guest-after-writeback')} | {smaps(c, 'guest', 'rss')} / {smaps(c, 'guest', 'anonymous')} |")
print()
FC = [("huge_pages=None", []), ("huge_pages=Transparent", ["--huge-pages", "transparent"])]
print("| firecracker-file-restore | read faults (major) | FilePmdMapped after reads (MiB) | write faults | Anonymous after writes (MiB) | Rss (MiB) | nr_dirtied |")
print("|---|---|---|---|---|---|---|")
for name, args in FC:
    for k in ['6.18']:
        c = run('firecracker-file-restore', args, ['--kernel', k])
        print(f"| {name} | {faults(c, 'guest-reads')} ({c['guest-reads']['majflt']}) | {smaps(c, 'guest-reads', 'file_pmd_mapped')} | {faults(c, 'guest-writes')} | {smaps(c, 'guest-writes', 'anonymous')} | {smaps(c, 'guest-writes', 'rss')} | {counter(c, 'guest-writes', 'vmstat.nr_dirtied')} |")
print()

def ram_smaps(cps, label, field):
    # ram0/ram1's smaps sum every VMA of their range, the balloon's remaps included.
    return sum(m['smaps'].get(field, 0) for m in cps[label]['mappings'] if m['name'].startswith('ram')) // 1024

def vmas(workload, args):
    src = subprocess.run([T, 'gen', workload] + args, capture_output=True, text=True, check=True).stdout
    return src.split('VMAs of guest memory after the balloon: ')[1].split(' ')[0]

BAL = [
    ("firecracker-file-restore", "Transparent", ["--huge-pages", "transparent"]),
    ("firecracker-file-restore", "Transparent, guest writes nothing", ["--huge-pages", "transparent", "--write-share", "0"]),
    ("firecracker-file-restore", "Transparent, --balloon-readvise (what-if)", ["--huge-pages", "transparent", "--balloon-readvise"]),
    ("firecracker-file-restore", "None", []),
    ("firecracker", "anonymous (boot): MADV_DONTNEED", []),
]

def pmd(c, label):
    return ram_smaps(c, label, 'file_pmd_mapped') + ram_smaps(c, label, 'anon_huge_pages')

print("| --balloon 25 | kernel | PMD-mapped before (MiB) | balloon: PMD splits | PMD-mapped after (MiB) | Rss after (MiB) | VMAs after | reuse faults | reuse THP faults | AnonHugePages after reuse (MiB) | Rss after reuse (MiB) |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for w, name, args in BAL:
    args = args + ["--balloon", "25"]
    before = 'guest-writes' if w == 'firecracker-file-restore' else 'booted'
    for k in ['6.12', '6.18']:
        c = run(w, args + ['--kernel', k])
        zaps = counter(c, 'inflated', 'vmstat.thp_split_pmd') + counter(c, 'reported', 'vmstat.thp_split_pmd')
        v = vmas(w, args) if w == 'firecracker-file-restore' else '2'
        print(f"| {w} {name} | {k} | {pmd(c, before)} | {zaps} | {pmd(c, 'reported')} | {ram_smaps(c, 'reported', 'rss')} | {v} | {faults(c, 'reused')} | {counter(c, 'reused', 'vmstat.thp_fault_alloc')} | {ram_smaps(c, 'reused', 'anon_huge_pages')} | {ram_smaps(c, 'reused', 'rss')} |")
