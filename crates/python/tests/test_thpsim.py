import thpsim

SCN = """\
mmap buf 2M anon private rw align=2M
madvise buf HUGEPAGE
read buf
write buf
expect minflt == 2
"""


def test_run_returns_the_cli_schema():
    r = thpsim.run(SCN)
    assert r["backend"] == "model"
    end = r["checkpoints"][-1]
    assert end["minflt"] == 2
    assert end["counters"]["vmstat.thp_fault_alloc"] == 1
    assert end["mappings"][0]["pages"] == [["thp_pmd", 512]]
    assert all(e["status"] == "Pass" for e in r["expects"])


def test_compare_variants_and_frames():
    runs = thpsim.compare(SCN, ["6.18", {"kernel": "6.12"}, {"sets": {"enabled": "never"}}])
    # 6.12 splits the huge zero page on the write fault (hzp_wp_fault=split): 513 faults and
    # no THP, as the README's example says; enabled=never maps no THP at all.
    assert [r["checkpoints"][-1]["counters"]["vmstat.thp_fault_alloc"] for r in runs] == [1, 0, 0]
    assert [r["checkpoints"][-1]["minflt"] for r in runs[:2]] == [2, 513]
    assert runs[1]["variant"] == "6.12"
    rows = thpsim.pages(runs)
    first = rows.iloc[0].to_dict() if hasattr(rows, "iloc") else rows[0]
    assert first == {"variant": "6.18", "checkpoint": "end", "mapping": "buf",
                     "backing": "thp_pmd", "pages": 512}
    cps = thpsim.checkpoints(runs)
    assert len(cps) == 3


def test_errors_name_the_line(tmp_path):
    p = tmp_path / "bad.thps"
    p.write_text("mmap buf 2M anon private rw\nwrite nope\n")
    try:
        thpsim.run(str(p))
    except ValueError as e:
        assert "bad.thps:2:" in str(e)
    else:
        raise AssertionError("a parse error must raise")


def test_sweep_is_a_grid_of_variants():
    rows = thpsim.sweep(SCN, {"enabled": ["always", "never"], "use_zero_page": [0, 1]},
                        kernels=["6.12", "6.18"])
    rows = rows.to_dict("records") if hasattr(rows, "to_dict") else (
        rows.to_dicts() if hasattr(rows, "to_dicts") else rows)
    # 2 kernels x 2 x 2, one checkpoint (`end`) each, grid values as columns.
    assert len(rows) == 8
    got = {(r["kernel"], r["enabled"], r["use_zero_page"]): (r["minflt"], r["vmstat.thp_fault_alloc"])
           for r in rows}
    # enabled=always: 6.18 maps the huge zero page then allocates a THP on the write (2
    # faults); 6.12 splits the huge zero PMD (1 + 512 faults); without the zero page the read
    # allocates the THP and the write takes no fault. enabled=never: 512 small-zero-page
    # reads, then 512 COW writes (use_zero_page is the huge zero page's knob only).
    assert got[("6.18", "always", 1)] == (2, 1)
    assert got[("6.12", "always", 1)] == (513, 0)
    assert got[("6.18", "always", 0)] == (1, 1)
    assert got[("6.12", "always", 0)] == (1, 1)
    assert got[("6.18", "never", 1)] == (1024, 0)
    assert got[("6.18", "never", 0)] == (1024, 0)


def test_sweep_rejects_a_scalar_grid():
    try:
        thpsim.sweep(SCN, {"enabled": "always"})
    except TypeError as e:
        assert "enabled" in str(e)
    else:
        raise AssertionError("a grid value must be a list")


CHILD = r"""
import mmap, sys
m = mmap.mmap(-1, 8 << 20, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
for off in (0, 5 << 12, 100 << 12):
    m[off] = 1
import ctypes
addr = ctypes.addressof(ctypes.c_char.from_buffer(m))
print(hex(addr), flush=True)
sys.stdin.read()
"""


def test_import_pid_rebuilds_a_live_process():
    import os
    import subprocess
    import sys

    import pytest
    if os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            raise AssertionError("import needs root, and CI runs as root")
        pytest.skip("import needs root (/proc/PID/pagemap PFNs, /proc/kpageflags)")
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        addr = int(child.stdout.readline(), 16)
        text = thpsim.import_pid(child.pid)
    finally:
        child.stdin.close()
        child.wait()
    # The importer names each VMA by its start and says which range it covers:
    # `# NAME = START-END (n VMAs)`; the child's mapping may have merged with a neighbour.
    name = None
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[0] == "#" and parts[2] == "=" and "-" in parts[3]:
            lo, hi = (int(x, 16) for x in parts[3].split("-"))
            if lo <= addr < hi:
                name = parts[1]
    assert name, text
    r = thpsim.run(text)
    assert r["expects"] and all(e["status"] == "Pass" for e in r["expects"])
    end = [c for c in r["checkpoints"] if c["label"] == "imported"][0]
    m = [m for m in end["mappings"] if m["name"] == name][0]
    # Three written pages, the rest never touched (THP off for the Python heap's mmap or
    # not: the importer pins the host's knobs; the expects above check each VMA).
    assert sum(n for b, n in m["pages"] if b == "anon") == 3


def test_import_pid_of_a_dead_process_raises():
    try:
        thpsim.import_pid(2 ** 22 + 7)
    except OSError as e:
        assert "/proc/" in str(e)
    else:
        raise AssertionError("importing a missing pid must raise")
