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
