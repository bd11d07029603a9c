# Re-derives the workload table of docs/workloads.md: python3 scenarios/workloads/table.py
# (from the repository root, after `cargo build --release`; THPSIM=path overrides the binary).
import json, subprocess, sys
import os
T=os.environ.get('THPSIM', 'target/release/thpsim')
TMP=os.environ.get('TMPDIR', '/tmp') + '/thpsim-workload-table.thps'
rows=[
 ("prealloc-populate", "QEMU", "prealloc-populate --threads 4"),
 ("prealloc-touch", "QEMU, kernel < 5.14 path", "prealloc-touch --threads 4"),
 ("precopy", "QEMU legacy (no multifd)", "precopy --used 50 --zero-share 10 --seed 7"),
 ("precopy", "QEMU 8.2 multifd (seeded)", "precopy --used 50 --zero-share 10 --seed 7 --multifd --qemu 8.2"),
 ("precopy", "QEMU 9.0 multifd (seeded)", "precopy --used 50 --zero-share 10 --seed 7 --multifd --qemu 9.0"),
 ("precopy", "QEMU 9.1+ multifd", "precopy --used 50 --zero-share 10 --seed 7 --multifd --qemu 9.1"),
 ("precopy", "QEMU 10.1+ multifd + postcopy-ram", "precopy --used 50 --zero-share 10 --seed 7 --multifd --qemu 10.1 --postcopy-ram"),
 ("precopy", "QEMU legacy, 3 iterations, 2 % dirtied", "precopy --used 50 --zero-share 10 --seed 7 --iterations 3 --dirty-share 2"),
 ("mapped-ram", "QEMU 9.0+ mapped-ram restore", "mapped-ram --used 50 --zero-share 10 --seed 7 --multifd"),
 ("postcopy", "QEMU (zero pages: ZEROPAGE)", "postcopy"),
 ("postcopy", "QEMU 10.1+ multifd (zero pages: COPY)", "postcopy --multifd --qemu 10.1"),
 ("background-snapshot", "QEMU", "background-snapshot"),
 ("balloon", "QEMU", "balloon"),
 ("virtio-mem", "QEMU, prealloc=on", "virtio-mem"),
 ("cloud-hypervisor", "CH prefault=on", "cloud-hypervisor"),
 ("ch-restore", "CH ondemand restore", "ch-restore"),
 ("ch-postcopy-shared", "CH postcopy, shared memfd RAM", "ch-postcopy-shared --used 60 --write-share 10"),
 ("firecracker", "FC huge_pages=Transparent", "firecracker"),
 ("kubevirt-thp", "KubeVirt VEP 383", "kubevirt-thp"),
 ("criu-lazy", "CRIU --lazy-pages", "criu-lazy"),
 ("jemalloc-hpa", "jemalloc HPA hugify_sync", "jemalloc-hpa"),
 ("tcmalloc-hpaa", "TCMalloc usermode collapse", "tcmalloc-hpaa"),
]
def mb(kb): return f"{kb/1024:.0f}" if kb%1024==0 else f"{kb/1024:.1f}"
print("| workload | variant | kernel | faults | AnonHugePages / Rss (MiB) | THP % (→ after khugepaged) | PMD splits | collapses | uffd msgs | zeroed pages | copied pages |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for w, var, args in rows:
    src=subprocess.run([T,'gen']+args.split(),capture_output=True,text=True,check=True).stdout
    open(TMP,'w').write(src)
    for k in ['6.12','6.18']:
        r=subprocess.run([T,'run',TMP,'--kernel',k,'--json'],capture_output=True,text=True)
        d=json.loads(r.stdout)
        cps=d['checkpoints']
        def tot(key):
            return sum(c['counters'].get(key,0) for c in cps)
        flt=sum(c['minflt'] for c in cps)
        last=cps[-1]
        ahp=sum(m['smaps']['anon_huge_pages'] for m in last['mappings'])
        rss=sum(m['smaps']['rss'] for m in last['mappings'])
        pct = f"{100*ahp/rss:.0f}" if rss else "-"
        if last['label']=='khugepaged-full-scan':
            pre=cps[-2]
            a0=sum(m['smaps']['anon_huge_pages'] for m in pre['mappings'])
            r0=sum(m['smaps']['rss'] for m in pre['mappings'])
            pct = (f"{100*a0/r0:.0f}" if r0 else "-") + " → " + pct
        copied=tot('vmstat.sim_collapse_copied_pages')+tot('vmstat.sim_cow_copied_pages')
        fails='' if r.returncode==0 else ' (expect fails)'
        print(f"| {w} | {var} | {k} | {flt} | {mb(ahp)} / {mb(rss)} | {pct} | {tot('vmstat.thp_split_pmd')} | {tot('vmstat.thp_collapse_alloc')} | {tot('uffd.events')} | {tot('vmstat.sim_zeroed_pages')} | {copied}{fails} |")
