//! Parser tests: exact ASTs for every form, exact diagnostics for every error class, and
//! property tests that no input makes the parser panic.

use proptest::prelude::*;
use thpsim_kernel::errno::{Errno, OpError, Signal};
use thpsim_kernel::types::{Advice, Prot};
use thpsim_scenario::ast::*;
use thpsim_scenario::diag::{render_all, Diagnostic};
use thpsim_scenario::docs::DESIGN_EXAMPLE;
use thpsim_scenario::parse;
use thpsim_scenario::table::OPS;

const K: u64 = 1 << 10;
const M: u64 = 1 << 20;
const G: u64 = 1 << 30;

/// For `one_err`: any hint (or none) is fine.
const ANY: Option<&str> = Some("");

fn sp(line: u32, col: u32, len: u32) -> Span {
    Span { line, col, len }
}

fn ok(src: &str) -> Scenario {
    match parse("t.thps", src) {
        Ok(s) => s,
        Err(d) => panic!("unexpected errors:\n{}", render_all(&d, src)),
    }
}

fn errs(src: &str) -> Vec<Diagnostic> {
    match parse("t.thps", src) {
        Ok(s) => panic!("expected errors, got {s:?}"),
        Err(d) => d,
    }
}

/// Asserts the file has exactly one error, at (line, col), whose message contains `msg` and
/// whose hint contains `hint` (or has no hint when `hint` is None).
#[track_caller]
fn one_err(src: &str, line: u32, col: u32, msg: &str, hint: Option<&str>) -> Diagnostic {
    let d = errs(src);
    assert_eq!(
        d.len(),
        1,
        "expected one error, got:\n{}",
        render_all(&d, src)
    );
    let d = d.into_iter().next().unwrap();
    assert_eq!((d.span.line, d.span.col), (line, col), "{d}");
    assert!(
        d.message.contains(msg),
        "message `{}` lacks `{msg}`",
        d.message
    );
    match hint {
        Some(h) => assert!(
            d.hint.as_deref().unwrap_or("").contains(h),
            "hint {:?} lacks `{h}`",
            d.hint
        ),
        None => assert_eq!(d.hint, None, "{d}"),
    }
    d
}

/// Ops have no PartialEq; their Debug output is exact and compares every field.
#[track_caller]
fn same<T: std::fmt::Debug>(got: &T, want: &T) {
    assert_eq!(format!("{got:#?}"), format!("{want:#?}"));
}

/// The ops of a file whose first line is `mmap buf 4M anon private` (that stmt dropped).
fn body(lines: &str) -> Vec<Op> {
    let src = format!("mmap buf 4M anon private\nmmap b2 8M anon private\n{lines}");
    ok(&src).stmts.into_iter().skip(2).map(|s| s.op).collect()
}

fn one_op(line: &str) -> Op {
    let mut v = body(line);
    assert_eq!(v.len(), 1);
    v.remove(0)
}

/// The range `buf…` as written on line 3 starting at col `col`, `len` chars.
fn r(off: Option<u64>, len: Option<u64>, col: u32, n: u32) -> RangeRef {
    RangeRef {
        mapping: "buf".into(),
        offset: off,
        len,
        span: sp(3, col, n),
    }
}

fn expect_of(line: &str) -> Expect {
    match one_op(line) {
        Op::Expect(e) => e,
        o => panic!("{o:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// ASTs

#[test]
fn design_example_exact_ast() {
    let s = ok(DESIGN_EXAMPLE);
    assert_eq!(s.file, "t.thps");
    let buf = |off: Option<u64>, line: u32, col: u32, len: u32| RangeRef {
        mapping: "buf".into(),
        offset: off,
        len: None,
        span: sp(line, col, len),
    };
    let access = |range, pattern| {
        Op::Access(AccessOp {
            range,
            pattern,
            stride: 4096,
            subset: None,
        })
    };
    let expect = |obs, value, text: &str| {
        Op::Expect(Expect {
            obs,
            cmp: Cmp::Eq,
            value,
            when: vec![],
            text: text.into(),
        })
    };
    let want = vec![
        Stmt {
            span: sp(2, 1, 6),
            op: Op::Kernel {
                profile: "6.18".into(),
            },
        },
        Stmt {
            span: sp(3, 1, 6),
            op: Op::Memory { bytes: 16 * G },
        },
        Stmt {
            span: sp(4, 1, 5),
            op: Op::Sysfs {
                settings: vec![
                    Setting {
                        key: "enabled".into(),
                        value: "madvise".into(),
                        span: sp(4, 7, 15),
                    },
                    Setting {
                        key: "use_zero_page".into(),
                        value: "1".into(),
                        span: sp(4, 23, 15),
                    },
                ],
            },
        },
        Stmt {
            span: sp(5, 1, 4),
            op: Op::Mmap(MmapOp {
                name: "buf".into(),
                name_span: sp(5, 6, 3),
                size: 2 * M,
                backing: MapBacking::Anon,
                shared: false,
                prot: Prot::RW,
                align: Some(2 * M),
                offset: 0,
                populate: false,
                object: None,
                foff: 0,
                hugetlb: None,
                noreserve: false,
                at: None,
            }),
        },
        Stmt {
            span: sp(6, 1, 7),
            op: Op::Madvise {
                range: buf(None, 6, 9, 3),
                advice: Advice::Hugepage,
            },
        },
        Stmt {
            span: sp(7, 1, 4),
            op: access(buf(Some(0), 7, 6, 5), Pattern::Read),
        },
        Stmt {
            span: sp(8, 1, 5),
            op: access(buf(Some(0), 8, 7, 5), Pattern::Write),
        },
        Stmt {
            span: sp(9, 1, 5),
            op: access(buf(None, 9, 7, 3), Pattern::Write),
        },
        Stmt {
            span: sp(10, 1, 6),
            op: expect(
                Observable::Minflt,
                ExpectValue::Int(2),
                "expect minflt == 2",
            ),
        },
        Stmt {
            span: sp(11, 1, 6),
            op: expect(
                Observable::Counter("vmstat.thp_fault_alloc".into()),
                ExpectValue::Int(1),
                "expect vmstat.thp_fault_alloc == 1",
            ),
        },
        Stmt {
            span: sp(12, 1, 6),
            op: expect(
                Observable::Smaps {
                    mapping: "buf".into(),
                    mapping_span: sp(12, 14, 3),
                    field: "AnonHugePages".into(),
                },
                ExpectValue::Int(2048),
                "expect smaps(buf).AnonHugePages == 2048kB",
            ),
        },
    ];
    same(&s.stmts, &want);
}

#[test]
fn setup_ops() {
    let s = ok("kernel 6.12\nmemory 0x400000\nset hzp_wp_fault=split large_folio_cow_reuse=0\nsysfs hugepages-64kB.enabled=always khugepaged.max_ptes_none=0\n");
    let ops: Vec<Op> = s.stmts.into_iter().map(|s| s.op).collect();
    same(
        &ops,
        &vec![
            Op::Kernel {
                profile: "6.12".into(),
            },
            Op::Memory { bytes: 4 * M },
            Op::Set {
                settings: vec![
                    Setting {
                        key: "hzp_wp_fault".into(),
                        value: "split".into(),
                        span: sp(3, 5, 18),
                    },
                    Setting {
                        key: "large_folio_cow_reuse".into(),
                        value: "0".into(),
                        span: sp(3, 24, 23),
                    },
                ],
            },
            Op::Sysfs {
                settings: vec![
                    Setting {
                        key: "hugepages-64kB.enabled".into(),
                        value: "always".into(),
                        span: sp(4, 7, 29),
                    },
                    Setting {
                        key: "khugepaged.max_ptes_none".into(),
                        value: "0".into(),
                        span: sp(4, 37, 26),
                    },
                ],
            },
        ],
    );
    // Sizes in every spelling.
    for (text, bytes) in [
        ("16G", 16 * G),
        ("16GiB", 16 * G),
        ("4096M", 4 * G),
        ("4MiB", 4 * M),
        ("4096kB", 4 * M),
        ("4096K", 4 * M),
        ("1T", 1 << 40),
        ("8T", 8 << 40),
        ("4194304", 4 * M),
    ] {
        match &ok(&format!("memory {text}")).stmts[0].op {
            Op::Memory { bytes: b } => assert_eq!(*b, bytes, "{text}"),
            o => panic!("{o:?}"),
        }
    }
    // sysfs may also appear in the body.
    let ops = body("sysfs enabled=always");
    assert!(matches!(&ops[0], Op::Sysfs { settings } if settings[0].key == "enabled"));
}

#[test]
fn swap_device_size() {
    match &ok("swap 1G").stmts[0].op {
        Op::Swap { bytes, .. } => assert_eq!(*bytes, G),
        o => panic!("{o:?}"),
    }
    match &ok("swap 8K").stmts[0].op {
        Op::Swap { bytes, .. } => assert_eq!(*bytes, 8 << 10),
        o => panic!("{o:?}"),
    }
    one_err("swap 4K", 1, 6, "between 8K and 64G", Some("swap header"));
    one_err(
        "swap 6000",
        1,
        6,
        "not a multiple of 4K",
        Some("swap header"),
    );
    one_err(
        "swap 128G",
        1,
        6,
        "between 8K and 64G",
        None.or(Some("e.g.")),
    );
    one_err(
        "swap 1G\nswap 2G",
        2,
        1,
        "swap size given twice",
        Some("line 1"),
    );
    // A setup op: not after the first body op.
    let d = errs("mmap a 4K anon private\nswap 1G");
    assert_eq!(d[0].span.line, 2);
}

#[test]
fn mmap_forms() {
    let mm = |line: &str| match &ok(line).stmts[0].op {
        Op::Mmap(m) => m.clone(),
        o => panic!("{o:?}"),
    };
    let m = mm("mmap a 4K anon private");
    same(
        &m,
        &MmapOp {
            name: "a".into(),
            name_span: sp(1, 6, 1),
            size: 4 * K,
            backing: MapBacking::Anon,
            shared: false,
            prot: Prot::RW,
            align: None,
            offset: 0,
            populate: false,
            object: None,
            foff: 0,
            hugetlb: None,
            noreserve: false,
            at: None,
        },
    );
    let m = mm("mmap _x9 64M anon private prot=r offset=4K align=1G populate");
    assert_eq!(
        (m.size, m.prot, m.align, m.offset, m.populate),
        (64 * M, Prot::R, Some(G), 4 * K, true)
    );
    let m = mm("mmap a 8K anon private populate none");
    assert_eq!((m.prot, m.populate), (Prot::NONE, true));
    let m = mm("mmap a 8K anon private rwx");
    assert_eq!(
        m.prot,
        Prot {
            read: true,
            write: true,
            exec: true
        }
    );
    let m = mm("mmap a 0x2000 anon private x");
    assert_eq!(
        (m.size, m.prot),
        (
            8 * K,
            Prot {
                read: false,
                write: false,
                exec: true
            }
        )
    );
}

#[test]
fn range_forms() {
    same(
        &one_op("munmap buf"),
        &Op::Munmap {
            range: r(None, None, 8, 3),
        },
    );
    same(
        &one_op("munmap buf+2M"),
        &Op::Munmap {
            range: r(Some(2 * M), None, 8, 6),
        },
    );
    same(
        &one_op("munmap buf+2M 2M"),
        &Op::Munmap {
            range: r(Some(2 * M), Some(2 * M), 8, 9),
        },
    );
    same(
        &one_op("munmap  buf+0x1000   4K"),
        &Op::Munmap {
            range: r(Some(4 * K), Some(4 * K), 9, 15),
        },
    );
    same(
        &one_op("mprotect buf+0 2M r"),
        &Op::Mprotect {
            range: r(Some(0), Some(2 * M), 10, 8),
            prot: Prot::R,
        },
    );
    same(
        &one_op("mprotect buf prot=none"),
        &Op::Mprotect {
            range: r(None, None, 10, 3),
            prot: Prot::NONE,
        },
    );
    same(
        &one_op("madvise buf MADV_NOHUGEPAGE"),
        &Op::Madvise {
            range: r(None, None, 9, 3),
            advice: Advice::Nohugepage,
        },
    );
    same(
        &one_op("madvise buf+4K 8K dontneed"),
        &Op::Madvise {
            range: r(Some(4 * K), Some(8 * K), 9, 9),
            advice: Advice::Dontneed,
        },
    );
    same(
        &one_op("madvise buf POPULATE_WRITE"),
        &Op::Madvise {
            range: r(None, None, 9, 3),
            advice: Advice::PopulateWrite,
        },
    );
    // Range ending exactly at the mapping's end.
    same(
        &one_op("munmap buf+4095K 1K"),
        &Op::Munmap {
            range: r(Some(4095 * K), Some(K), 8, 12),
        },
    );
    same(
        &one_op("read buf+4194303"),
        &Op::Access(AccessOp {
            range: r(Some(4 * M - 1), None, 6, 11),
            pattern: Pattern::Read,
            stride: 4096,
            subset: None,
        }),
    );
}

#[test]
fn access_forms() {
    let acc = |line: &str| match one_op(line) {
        Op::Access(a) => a,
        o => panic!("{o:?}"),
    };
    same(
        &acc("read buf stride=64K"),
        &AccessOp {
            range: r(None, None, 6, 3),
            pattern: Pattern::Read,
            stride: 64 * K,
            subset: None,
        },
    );
    same(
        &acc("write buf+0 1M random=16"),
        &AccessOp {
            range: r(Some(0), Some(M), 7, 8),
            pattern: Pattern::Write,
            stride: 4096,
            subset: Some(Subset {
                count: SubsetCount::Pages(16),
                seed: 0,
            }),
        },
    );
    same(
        &acc("access buf pattern=rw random=30% seed=42 stride=8K"),
        &AccessOp {
            range: r(None, None, 8, 3),
            pattern: Pattern::ReadWrite,
            stride: 8 * K,
            subset: Some(Subset {
                count: SubsetCount::Percent(30),
                seed: 42,
            }),
        },
    );
    assert_eq!(acc("access buf pattern=r").pattern, Pattern::Read);
    assert_eq!(acc("access buf pattern=w").pattern, Pattern::Write);
    assert_eq!(
        acc("read buf seed=0x10 random=100%").subset,
        Some(Subset {
            count: SubsetCount::Percent(100),
            seed: 16
        })
    );
    assert_eq!(acc("read buf stride=1").stride, 1);
}

#[test]
fn repeat_and_checkpoint() {
    let ops = body(
        "repeat 3\n  write buf+0\n  repeat 2\n    checkpoint a.b-1_c\n  end\nend\nread buf+0\n",
    );
    assert_eq!(ops.len(), 2);
    let Op::Repeat {
        count: 3,
        body: outer,
    } = &ops[0]
    else {
        panic!("{:?}", ops[0])
    };
    assert_eq!(outer.len(), 2);
    assert_eq!(outer[0].span, sp(4, 3, 5));
    assert!(matches!(&outer[0].op, Op::Access(a) if a.pattern == Pattern::Write));
    assert_eq!(outer[1].span, sp(5, 3, 6));
    let Op::Repeat {
        count: 2,
        body: inner,
    } = &outer[1].op
    else {
        panic!("{:?}", outer[1])
    };
    same(
        &inner[0].op,
        &Op::Checkpoint {
            label: "a.b-1_c".into(),
        },
    );
    assert_eq!(inner[0].span, sp(6, 5, 10));
    assert!(matches!(&ops[1], Op::Access(a) if a.pattern == Pattern::Read));
    // The repeat statement's span is its keyword.
    let s = ok("repeat 1\nend\n");
    assert_eq!(s.stmts[0].span, sp(1, 1, 6));
    same(
        &s.stmts[0].op,
        &Op::Repeat {
            count: 1,
            body: vec![],
        },
    );
}

#[test]
fn observable_forms() {
    let obs = |o: &str| expect_of(&format!("expect {o} == 0")).obs;
    let c = |k: &str| Observable::Counter(k.into());
    same(&obs("minflt"), &Observable::Minflt);
    same(&obs("majflt"), &Observable::Majflt);
    same(&obs("pgfault"), &c("vmstat.pgfault"));
    same(&obs("vmstat.thp_split_pmd"), &c("vmstat.thp_split_pmd"));
    same(&obs("vmstat.nr_anon_pages"), &c("vmstat.nr_anon_pages"));
    for size in ["64kB", "64K", "64KiB", "0x40K"] {
        same(
            &obs(&format!("mthp.{size}.anon_fault_alloc")),
            &c("mthp.64kB.anon_fault_alloc"),
        );
    }
    for size in ["2M", "2048kB", "2048K"] {
        same(
            &obs(&format!("mthp.{size}.split_deferred")),
            &c("mthp.2048kB.split_deferred"),
        );
    }
    same(&obs("mthp.16kB.nr_anon"), &c("mthp.16kB.nr_anon"));
    same(
        &obs("khugepaged.pages_collapsed"),
        &c("khugepaged.pages_collapsed"),
    );
    same(&obs("khugepaged.full_scans"), &c("khugepaged.full_scans"));
    same(
        &obs("smaps(buf).THPeligible"),
        &Observable::Smaps {
            mapping: "buf".into(),
            mapping_span: sp(3, 14, 3),
            field: "THPeligible".into(),
        },
    );
    same(
        &obs("smaps( buf ).Rss"),
        &Observable::Smaps {
            mapping: "buf".into(),
            mapping_span: sp(3, 15, 3),
            field: "Rss".into(),
        },
    );
    same(
        &obs("pages(buf).none"),
        &Observable::Pages {
            range: r(None, None, 14, 3),
            class: "none".into(),
        },
    );
    same(
        &obs("pages(buf+4K).zero"),
        &Observable::Pages {
            range: r(Some(4 * K), None, 14, 6),
            class: "zero".into(),
        },
    );
    same(
        &obs("pages(buf+2M 2M).thp_pmd"),
        &Observable::Pages {
            range: r(Some(2 * M), Some(2 * M), 14, 9),
            class: "thp_pmd".into(),
        },
    );
    same(
        &obs("pages(buf+0  1M).thp_pte"),
        &Observable::Pages {
            range: r(Some(0), Some(M), 14, 9),
            class: "thp_pte".into(),
        },
    );
    // Every class and field is accepted.
    for class in thpsim_kernel::observe::Backing::CLASSES {
        assert!(matches!(
            obs(&format!("pages(buf).{class}")),
            Observable::Pages { .. }
        ));
    }
    for f in thpsim_kernel::observe::Smaps::FIELDS {
        assert!(matches!(
            obs(&format!("smaps(buf).{f}")),
            Observable::Smaps { .. }
        ));
    }
    for i in thpsim_kernel::vmstat::VmItem::ALL {
        same(
            &obs(&format!("vmstat.{}", i.name())),
            &c(&format!("vmstat.{}", i.name())),
        );
    }
}

#[test]
fn expect_values_and_cmps() {
    let e = expect_of("expect vmstat.nr_anon_pages <= -512   # gauge went down");
    assert_eq!(
        (e.cmp, e.value.clone(), e.text.as_str()),
        (
            Cmp::Le,
            ExpectValue::Int(-512),
            "expect vmstat.nr_anon_pages <= -512"
        )
    );
    for (c, want) in [
        ("==", Cmp::Eq),
        ("!=", Cmp::Ne),
        ("<", Cmp::Lt),
        ("<=", Cmp::Le),
        (">", Cmp::Gt),
        (">=", Cmp::Ge),
    ] {
        assert_eq!(expect_of(&format!("expect minflt {c} 1")).cmp, want);
    }
    let v = |line: &str| expect_of(line).value;
    assert_eq!(v("expect minflt == +3"), ExpectValue::Int(3));
    assert_eq!(v("expect pages(buf).anon == 1024"), ExpectValue::Int(1024));
    assert_eq!(
        v("expect smaps(buf).AnonHugePages == 2048kB"),
        ExpectValue::Int(2048)
    );
    assert_eq!(
        v("expect smaps(buf).AnonHugePages == 2M"),
        ExpectValue::Int(2048)
    );
    assert_eq!(v("expect smaps(buf).Rss == 4K"), ExpectValue::Int(4));
    assert_eq!(v("expect smaps(buf).Rss == 4"), ExpectValue::Int(4));
    assert_eq!(v("expect smaps(buf).Rss == 0"), ExpectValue::Int(0));
    assert_eq!(v("expect errno == ok"), ExpectValue::Ok);
    assert_eq!(v("expect errno == 0"), ExpectValue::Ok);
    assert_eq!(
        v("expect errno != EINVAL"),
        ExpectValue::Err(OpError::Errno(Errno::EINVAL))
    );
    assert_eq!(
        v("expect errno == ENOMEM"),
        ExpectValue::Err(OpError::Errno(Errno::ENOMEM))
    );
    assert_eq!(
        v("expect errno == SIGSEGV"),
        ExpectValue::Err(OpError::Signal(Signal::Sigsegv))
    );
    assert_eq!(
        v("expect errno == SIGBUS"),
        ExpectValue::Err(OpError::Signal(Signal::Sigbus))
    );
}

#[test]
fn conditions() {
    let w = |line: &str| expect_of(line).when;
    assert_eq!(w("expect minflt == 1"), vec![]);
    assert_eq!(
        w("expect minflt == 1 when kernel=6.12"),
        vec![Condition::Kernel {
            cmp: Cmp::Eq,
            version: (6, 12)
        }]
    );
    assert_eq!(
        w("expect minflt == 1 when kernel==6.12"),
        vec![Condition::Kernel {
            cmp: Cmp::Eq,
            version: (6, 12)
        }]
    );
    assert_eq!(
        w("expect minflt == 1 when kernel>=6.13"),
        vec![Condition::Kernel {
            cmp: Cmp::Ge,
            version: (6, 13)
        }]
    );
    assert_eq!(
        w("expect minflt == 1 when kernel<6.13"),
        vec![Condition::Kernel {
            cmp: Cmp::Lt,
            version: (6, 13)
        }]
    );
    assert_eq!(
        w("expect minflt == 1 when kernel>7.0"),
        vec![Condition::Kernel {
            cmp: Cmp::Gt,
            version: (7, 0)
        }]
    );
    assert_eq!(
        w("expect minflt == 1 when kernel<=6.18"),
        vec![Condition::Kernel {
            cmp: Cmp::Le,
            version: (6, 18)
        }]
    );
    assert_eq!(
        w("expect minflt == 1 when kernel!=6.18"),
        vec![Condition::Kernel {
            cmp: Cmp::Ne,
            version: (6, 18)
        }]
    );
    assert_eq!(
        w("expect minflt == 1 when kernel>=6.13 hzp_wp_fault=split large_folio_cow_reuse=1 # two"),
        vec![
            Condition::Kernel {
                cmp: Cmp::Ge,
                version: (6, 13)
            },
            Condition::Switch {
                key: "hzp_wp_fault".into(),
                value: "split".into()
            },
            Condition::Switch {
                key: "large_folio_cow_reuse".into(),
                value: "1".into()
            },
        ]
    );
    let e = expect_of("expect minflt == 1 when kernel>=6.13 hzp_wp_fault=split   # c");
    assert_eq!(
        e.text,
        "expect minflt == 1 when kernel>=6.13 hzp_wp_fault=split"
    );
}

#[test]
fn comments_blank_lines_and_whitespace() {
    let s = ok("\n# only a comment\n   \n\tkernel\t6.18#trailing\r\nmemory 4M   \r\n");
    assert_eq!(s.stmts.len(), 2);
    assert_eq!(s.stmts[0].span, sp(4, 2, 6));
    assert_eq!(s.stmts[1].span, sp(5, 1, 6));
    assert!(ok("").stmts.is_empty());
    assert!(ok("\u{feff}# bom\n").stmts.is_empty());
}

// ---------------------------------------------------------------------------------------------
// Diagnostics

#[test]
fn unknown_op() {
    one_err(
        "mmap buf 2M anon private\nmadvice buf HUGEPAGE\n",
        2,
        1,
        "unknown op `madvice`",
        Some("did you mean `madvise`?"),
    );
    one_err(
        "frobnicate",
        1,
        1,
        "unknown op `frobnicate`",
        Some("statements start with one of"),
    );
}

#[test]
fn bad_size() {
    let d = one_err(
        "mmap buf 2Q anon private",
        1,
        10,
        "bad mapping size `2Q`: unknown unit `Q`",
        Some("K, M, G or T"),
    );
    assert_eq!(d.span.len, 2);
    one_err("memory 2k", 1, 8, "unknown unit `k`", Some("write `K`"));
    one_err(
        "mmap buf 2M anon private\nread buf+xyz",
        2,
        10,
        "bad offset `xyz`",
        Some("K, M, G or T"),
    );
}

#[test]
fn size_overflow() {
    one_err("memory 16777216T", 1, 8, "overflows 64 bits", Some("2^64"));
    one_err(
        "mmap buf 99999999999999999999 anon private",
        1,
        10,
        "overflows 64 bits",
        Some("2^64"),
    );
    one_err(
        "mmap buf 2M anon private\nread buf+0xffffffffffffffff 2",
        2,
        6,
        "out of range",
        None,
    );
}

#[test]
fn memory_limits() {
    one_err(
        "memory 3M",
        1,
        8,
        "not a positive multiple of 4M",
        Some("4 MiB buddy blocks"),
    );
    one_err(
        "memory 0",
        1,
        8,
        "not a positive multiple of 4M",
        Some("4 MiB"),
    );
    one_err("memory 32T", 1, 8, "more than the 8T", Some("8T"));
    one_err(
        "kernel 6.18\nmemory 4M\nmemory 8M",
        3,
        1,
        "memory size given twice",
        Some("line 2"),
    );
    one_err(
        "kernel 6.18\nkernel 6.12",
        2,
        1,
        "kernel profile chosen twice",
        Some("line 1"),
    );
    one_err(
        "kernel 5.4",
        1,
        8,
        "unknown kernel profile `5.4`",
        Some("known profiles: 6.12, 6.18"),
    );
}

#[test]
fn unknown_mapping() {
    let src = "kernel 6.18\nmemory 16G\nsysfs enabled=madvise\nmmap buf 2M anon private\nmadvise bfu HUGEPAGE\n";
    let d = one_err(
        src,
        5,
        9,
        "unknown mapping `bfu`",
        Some("did you mean `buf`?"),
    );
    assert_eq!(d.span.len, 3);
    assert_eq!(
        d.render(src),
        "t.thps:5:9: error: unknown mapping `bfu`\n   5 | madvise bfu HUGEPAGE\n     |         ^^^\n     = hint: did you mean `buf`?\n"
    );
    one_err(
        "read buf+0",
        1,
        6,
        "unknown mapping `buf`",
        Some("map it first"),
    );
    one_err(
        "mmap buf 2M anon private\nexpect smaps(bfu).Rss == 0",
        2,
        14,
        "unknown mapping `bfu`",
        Some("`buf`"),
    );
    one_err(
        "mmap buf 2M anon private\nexpect pages(zzzzzz+0 4K).anon == 0",
        2,
        14,
        "unknown mapping `zzzzzz`",
        Some("mappings defined so far: buf"),
    );
    // Only mappings created earlier count.
    one_err(
        "read buf\nmmap buf 2M anon private",
        1,
        6,
        "unknown mapping `buf`",
        Some("map it first"),
    );
}

#[test]
fn duplicate_mapping() {
    one_err(
        "mmap buf 2M anon private\n\nmmap buf 4M anon private\n",
        3,
        6,
        "mapping `buf` is already defined",
        Some("first mapped at line 1"),
    );
}

#[test]
fn out_of_range() {
    let d = one_err(
        "mmap buf 2M anon private\nmadvise buf+1M 2M HUGEPAGE",
        2,
        9,
        "out of range: buf is 2M, range ends at 3M",
        None,
    );
    assert_eq!(d.span.len, 9);
    one_err(
        "mmap buf 2M anon private\nread buf+2M",
        2,
        6,
        "out of range: buf is 2M, offset 2M is past its end",
        None,
    );
    one_err(
        "mmap buf 2M anon private\nexpect pages(buf+2M 4K).anon == 0",
        2,
        14,
        "out of range",
        None,
    );
}

#[test]
fn name_len_form_refused() {
    let d = one_err(
        "mmap buf 2M anon private\nmunmap buf 1M",
        2,
        8,
        "ambiguous range `buf 1M`",
        Some("write `buf+0 1M`"),
    );
    assert_eq!(d.span.len, 6);
    one_err(
        "mmap buf 2M anon private\nexpect pages(buf 1M).anon == 0",
        2,
        14,
        "ambiguous range",
        Some("`buf+0 1M`"),
    );
}

#[test]
fn sysfs_errors() {
    one_err(
        "sysfs enabeld=always",
        1,
        7,
        "unknown sysfs knob `enabeld`",
        Some("did you mean `enabled`?"),
    );
    let d = one_err(
        "sysfs enabled=inherit",
        1,
        15,
        "bad value `inherit` for sysfs knob `enabled`",
        Some("always|madvise|never"),
    );
    assert_eq!(d.span.len, 7);
    one_err(
        "sysfs khugepaged.max_ptes_none=512",
        1,
        32,
        "bad value `512`",
        Some("0..=511"),
    );
    one_err(
        "sysfs hugepages-8kB.enabled=always",
        1,
        7,
        "unknown sysfs knob",
        ANY,
    );
    one_err(
        "sysfs enabled",
        1,
        7,
        "expected knob=value",
        Some("key=value"),
    );
    one_err("sysfs", 1, 6, "missing knob=value", None);
}

#[test]
fn switch_errors() {
    one_err(
        "set hzp_wp_fualt=split",
        1,
        5,
        "unknown switch `hzp_wp_fualt`",
        Some("did you mean `hzp_wp_fault`?"),
    );
    one_err(
        "set hzp_wp_fault=maybe",
        1,
        18,
        "takes split or thp",
        Some("split|thp"),
    );
    one_err(
        "mmap buf 2M anon private\nexpect minflt == 1 when hzp_wp=thp",
        2,
        25,
        "unknown switch `hzp_wp`",
        ANY,
    );
    one_err(
        "mmap buf 2M anon private\nset hzp_wp_fault=thp",
        2,
        1,
        "must come before the first operation",
        Some("setup statements"),
    );
    one_err(
        "repeat 1\nkernel 6.18\nend",
        2,
        1,
        "cannot be inside `repeat`",
        Some("top level"),
    );
}

#[test]
fn observable_errors() {
    let pre = "mmap buf 2M anon private\n";
    let e = |line: &str| format!("{pre}{line}");
    one_err(
        &e("expect vmstat.thp_fault_aloc == 1"),
        2,
        15,
        "unknown vmstat counter `thp_fault_aloc`",
        Some("did you mean `vmstat.thp_fault_alloc`?"),
    );
    one_err(
        &e("expect smaps(buf).AnonHugepages == 0"),
        2,
        19,
        "unknown smaps field `AnonHugepages`",
        Some("did you mean `AnonHugePages`?"),
    );
    one_err(
        &e("expect pages(buf).thp_pdm == 0"),
        2,
        19,
        "unknown page class `thp_pdm`",
        Some("did you mean `thp_pmd`?"),
    );
    one_err(
        &e("expect mthp.4kB.anon_fault_alloc == 0"),
        2,
        13,
        "`4kB` is not an mTHP size",
        Some("8kB, 16kB"),
    );
    one_err(
        &e("expect mthp.64.anon_fault_alloc == 0"),
        2,
        13,
        "`64` is not an mTHP size",
        Some("64kB"),
    );
    one_err(
        &e("expect mthp.64kB.anon_fault == 0"),
        2,
        18,
        "unknown mTHP stat `anon_fault`",
        Some("anon_fault_alloc"),
    );
    one_err(
        &e("expect khugepaged.pages_colapsed == 0"),
        2,
        19,
        "unknown khugepaged stat",
        Some("`khugepaged.pages_collapsed`"),
    );
    one_err(
        &e("expect thp_fault_alloc == 1"),
        2,
        8,
        "unknown observable `thp_fault_alloc`",
        Some("`vmstat.thp_fault_alloc`"),
    );
    one_err(
        &e("expect minfault == 1"),
        2,
        8,
        "unknown observable",
        Some("did you mean `minflt`?"),
    );
    one_err(
        &e("expect minflt==1"),
        2,
        8,
        "bad observable",
        Some("separate the comparison with spaces"),
    );
    one_err(&e("expect smaps(buf == 1"), 2, 8, "missing `)`", None);
    one_err(
        &e("expect smaps(buf+4K).Rss == 1"),
        2,
        14,
        "takes a mapping name, not a range",
        Some("pages(RANGE)"),
    );
    one_err(
        &e("expect smaps(buf) == 1"),
        2,
        18,
        "missing `.field`",
        Some("AnonHugePages"),
    );
    one_err(
        &e("expect minflt = 1"),
        2,
        15,
        "bad comparison `=`",
        Some("write `==`"),
    );
    one_err(
        &e("expect errno < 1"),
        2,
        14,
        "only be compared with == or !=",
        None,
    );
    one_err(
        &e("expect errno == einval"),
        2,
        17,
        "unknown errno value",
        Some("`EINVAL`"),
    );
    one_err(
        &e("expect errno == EINVL"),
        2,
        17,
        "unknown errno value",
        Some("did you mean `EINVAL`?"),
    );
}

#[test]
fn value_and_condition_errors() {
    let pre = "mmap buf 2M anon private\n";
    let e = |line: &str| format!("{pre}{line}");
    one_err(
        &e("expect smaps(buf).Rss == 0x600"),
        2,
        26,
        "not a whole number of kB",
        Some("2048kB"),
    );
    one_err(
        &e("expect smaps(buf).Rss == -4"),
        2,
        26,
        "not negative",
        None,
    );
    one_err(
        &e("expect minflt == 2M"),
        2,
        18,
        "bad value `2M`",
        Some("only meaningful for smaps"),
    );
    one_err(
        &e("expect minflt == many"),
        2,
        18,
        "bad value `many`",
        Some("may be negative"),
    );
    one_err(
        &e("expect minflt == 99999999999999999999"),
        2,
        18,
        "does not fit in 64 bits",
        None,
    );
    one_err(
        &e("expect minflt =="),
        2,
        17,
        "missing expected value",
        Some("usage: expect"),
    );
    one_err(
        &e("expect minflt == 1 when"),
        2,
        24,
        "missing condition after `when`",
        Some("kernel>=6.13"),
    );
    one_err(
        &e("expect minflt == 1 if kernel>=6.13"),
        2,
        20,
        "unexpected `if`",
        Some("`when`"),
    );
    one_err(
        &e("expect minflt == 1 when kernel>=6"),
        2,
        33,
        "bad kernel version `6`",
        Some("MAJOR.MINOR"),
    );
    one_err(
        &e("expect minflt == 1 when kernel"),
        2,
        25,
        "bad kernel condition",
        Some("no spaces"),
    );
    one_err(
        &e("expect minflt == 1 when hzp_wp_fault=maybe"),
        2,
        38,
        "takes split or thp",
        Some("split|thp"),
    );
    one_err(
        &e("expect minflt == 1 when 6.13"),
        2,
        25,
        "bad condition `6.13`",
        Some("kernel<cmp>"),
    );
}

#[test]
fn unmodelled_advice() {
    one_err(
        "mmap buf 2M anon private\nmadvise buf MADV_DONTFORK",
        2,
        13,
        "MADV_DONTFORK is not modelled yet",
        Some("modelled advice:"),
    );
    one_err(
        "mmap buf 2M anon private\nmadvise buf WIPEONFORK",
        2,
        13,
        "MADV_WIPEONFORK is not modelled yet",
        Some("HUGEPAGE"),
    );
    one_err(
        "mmap buf 2M anon private\nmadvise buf HUGEPAEG",
        2,
        13,
        "unknown madvise advice `HUGEPAEG`",
        Some("did you mean `HUGEPAGE`?"),
    );
    one_err(
        "mmap buf 2M anon private\nmadvise buf MADV_HUGEPAEG",
        2,
        13,
        "unknown madvise advice",
        Some("`HUGEPAGE`"),
    );
    one_err(
        "mmap buf 2M anon private\nmadvise buf",
        2,
        12,
        "missing advice",
        Some("usage: madvise RANGE ADVICE"),
    );
}

#[test]
fn mmap_errors() {
    // Shared anonymous memory is shmem now; a `memfd` backing must name its object.
    assert!(parse("t.thps", "mmap buf 2M anon shared").is_ok());
    one_err(
        "mmap buf 2M memfd shared",
        1,
        13,
        "a memfd mapping names its object",
        Some("`memfd NAME SIZE`"),
    );
    for b in ["file", "shmem", "guest_memfd"] {
        one_err(
            &format!("mmap buf 2M {b} private"),
            1,
            13,
            &format!("`{b}` mappings are not modelled yet"),
            Some("anon"),
        );
    }
    one_err(
        "mmap buf 2M anno private",
        1,
        13,
        "unknown backing `anno`",
        Some("did you mean `anon`?"),
    );
    one_err(
        "mmap buf 2M anon privat",
        1,
        18,
        "expected `private` or `shared`",
        None,
    );
    one_err(
        "mmap 9buf 2M anon private",
        1,
        6,
        "bad mapping name `9buf`",
        Some("identifiers"),
    );
    one_err(
        "mmap buf 0 anon private",
        1,
        10,
        "not a positive multiple of the 4K page size",
        None,
    );
    one_err(
        "mmap buf 6000 anon private",
        1,
        10,
        "not a positive multiple of the 4K page size",
        None,
    );
    one_err("mmap buf 128T anon private", 1, 10, "larger than 64T", None);
    one_err(
        "mmap buf 2M anon private align=3M",
        1,
        32,
        "not a power of two",
        None,
    );
    one_err(
        "mmap buf 2M anon private align=2K",
        1,
        32,
        "not a power of two between 4K and 64T",
        None,
    );
    one_err(
        "mmap buf 2M anon private offset=100",
        1,
        33,
        "not a multiple of the 4K page size",
        None,
    );
    one_err(
        "mmap buf 2M anon private rw r",
        1,
        29,
        "protection given twice",
        None,
    );
    one_err(
        "mmap buf 2M anon private prot=rr",
        1,
        31,
        "bad protection `rr`",
        Some("rwx"),
    );
    one_err(
        "mmap buf 2M anon private alig=2M",
        1,
        26,
        "unknown mmap option `alig`",
        Some("did you mean `align`?"),
    );
    one_err(
        "mmap buf 2M anon private populat",
        1,
        26,
        "unexpected `populat`",
        Some("did you mean `populate`?"),
    );
    one_err(
        "mmap buf 2M anon",
        1,
        17,
        "missing `private` or `shared`",
        Some("usage: mmap"),
    );
    one_err(
        "mmap buf",
        1,
        9,
        "missing mapping size",
        Some("usage: mmap"),
    );
}

#[test]
fn access_errors() {
    let pre = "mmap buf 2M anon private\n";
    let e = |line: &str| format!("{pre}{line}");
    one_err(
        &e("read buf seed=3"),
        2,
        10,
        "`seed` without `random`",
        Some("random=N"),
    );
    one_err(
        &e("read buf stride=0"),
        2,
        17,
        "stride must be greater than 0",
        None,
    );
    one_err(
        &e("read buf random=101%"),
        2,
        17,
        "bad percentage",
        Some("0..=100"),
    );
    one_err(&e("read buf random=x"), 2, 17, "bad random count `x`", None);
    one_err(
        &e("read buf strid=4K"),
        2,
        10,
        "unknown read option `strid`",
        Some("did you mean `stride`?"),
    );
    one_err(
        &e("read buf pattern=w"),
        2,
        10,
        "`read` has a fixed pattern",
        Some("access RANGE pattern"),
    );
    one_err(
        &e("access buf"),
        2,
        11,
        "missing pattern=r|w|rw",
        Some("usage: access"),
    );
    one_err(
        &e("access buf pattern=x"),
        2,
        20,
        "bad pattern `x`",
        Some("r, w, rw"),
    );
    one_err(
        &e("read buf stride=4K stride=8K"),
        2,
        20,
        "`stride` given twice",
        None,
    );
    one_err(
        &e("read buf+0 stride=4K 4K"),
        2,
        22,
        "unexpected `4K`",
        Some("NAME+0 LEN"),
    );
    one_err(&e("read"), 2, 5, "missing range", Some("usage: read"));
    one_err(
        &e("read buf+"),
        2,
        10,
        "missing offset after `+`",
        Some("buf+4K"),
    );
    one_err(
        &e("munmap buf extra"),
        2,
        12,
        "unexpected `extra` after `munmap` statement",
        Some("usage: munmap RANGE"),
    );
}

#[test]
fn blocks() {
    one_err(
        "mmap buf 2M anon private\nrepeat 2\n  write buf+0\n",
        2,
        1,
        "`repeat` without a matching `end`",
        Some("`end`"),
    );
    one_err(
        "mmap buf 2M anon private\nwrite buf+0\nend\n",
        3,
        1,
        "`end` without a matching `repeat`",
        Some("repeat N"),
    );
    one_err("repeat 0\nend", 1, 8, "bad repeat count `0`", Some("1 to"));
    one_err("repeat x\nend", 1, 8, "bad repeat count `x`", ANY);
    one_err(
        "repeat 2 {\nend",
        1,
        10,
        "closed with `end`, not braces",
        Some("`repeat 2` on its own line"),
    );
    one_err(
        "repeat 1\nend 3",
        2,
        5,
        "unexpected `3`",
        Some("usage: end"),
    );
    // A bad count still opens the block: the `end` is not reported as stray.
    assert_eq!(errs("repeat\nend").len(), 1);
    // Nested, one unclosed: the error points at the unclosed one.
    one_err(
        "repeat 2\nrepeat 3\nend\n",
        1,
        1,
        "without a matching `end`",
        ANY,
    );
}

#[test]
fn checkpoint_errors() {
    one_err(
        "checkpoint a\ncheckpoint a",
        2,
        12,
        "checkpoint `a` is already defined",
        Some("line 1"),
    );
    one_err(
        "checkpoint a/b",
        1,
        12,
        "bad checkpoint label",
        Some("letters"),
    );
    one_err(
        "checkpoint",
        1,
        11,
        "missing checkpoint label",
        Some("usage"),
    );
}

#[test]
fn all_errors_are_reported() {
    let src = "kernel 6.18\nmmap buf 2M anon private\nmadvise bfu HUGEPAGE\nfrob\nread buf stride=0\nexpect minflt == 1\n";
    let d = errs(src);
    let at: Vec<(u32, u32)> = d.iter().map(|d| (d.span.line, d.span.col)).collect();
    assert_eq!(at, vec![(3, 9), (4, 1), (5, 17)], "{}", render_all(&d, src));
    let text = render_all(&d, src);
    assert!(text.ends_with("3 errors\n"), "{text}");
    assert!(
        text.contains("t.thps:4:1: error: unknown op `frob`"),
        "{text}"
    );
}

#[test]
fn errors_do_not_cascade() {
    // A mapping with a bad size is still known: its uses are not reported again.
    one_err(
        "mmap buf 2Q anon private\nread buf+4K\nexpect smaps(buf).Rss == 4\n",
        1,
        10,
        "unknown unit",
        ANY,
    );
    // An unmodelled mapping too.
    one_err(
        "mmap buf 2M file shared\nwrite buf\n",
        1,
        13,
        "not modelled yet",
        ANY,
    );
    // A bad op inside a block does not unbalance it.
    one_err("repeat 2\n  frob\nend\n", 2, 3, "unknown op", ANY);
    // Hints for very long words are skipped (no quadratic edit distance on huge input).
    let long = "x".repeat(100_000);
    assert_eq!(errs(&long)[0].span.len, 100_000);
}

#[test]
fn display_and_render() {
    let src = "mmap buf 2M anon private\n\tmadvise  bfu HUGEPAGE # c\n";
    let d = one_err(src, 2, 11, "unknown mapping `bfu`", Some("`buf`"));
    assert_eq!(
        d.to_string(),
        "t.thps:2:11: error: unknown mapping `bfu` (hint: did you mean `buf`?)"
    );
    assert_eq!(
        d.render(src),
        "t.thps:2:11: error: unknown mapping `bfu`\n   2 |  madvise  bfu HUGEPAGE # c\n     |           ^^^\n     = hint: did you mean `buf`?\n"
    );
    // A span past the end of the source renders without a source line.
    let far = Diagnostic {
        span: Span {
            line: 99,
            col: 1,
            len: 1,
        },
        ..d.clone()
    };
    assert_eq!(
        far.render(src),
        "t.thps:99:1: error: unknown mapping `bfu`\n     = hint: did you mean `buf`?\n"
    );
    // Objects: a backing must be an object made by `memfd` earlier; `foff` needs one.
    let d = errs("mmap a 4K ram shared");
    assert!(
        d[0].message.contains("unknown backing `ram`"),
        "{}",
        d[0].message
    );
    let d = errs("memfd ram 1M\nmmap a 4K ram shared foff=3K");
    assert!(d[0].message.contains("not a multiple"), "{}", d[0].message);
    let d = errs("mmap a 4K anon shared foff=4K");
    assert_eq!(d[0].message, "`foff` is the offset into a memfd object");
    let d = errs("memfd ram 1M\nftruncate rma 4K");
    assert!(
        d[0].hint.as_deref().unwrap_or("").contains("`ram`"),
        "{:?}",
        d[0].hint
    );
    let d = errs("memfd ram 1M\nmemfd ram 2M");
    assert_eq!(d[0].message, "object `ram` is already defined");
    match &ok("memfd ram 1M\nmmap a 8K ram private foff=4K").stmts[1].op {
        Op::Mmap(m) => {
            assert_eq!(
                (m.backing, m.object.as_deref(), m.foff),
                (MapBacking::Memfd, Some("ram"), 4096)
            );
        }
        o => panic!("{o:?}"),
    }
    // gmem: flag words and raw flags or-ed together; size 0 and unaligned sizes reach the
    // kernel; the name is an object name like memfd's.
    match &ok("gmem g 0 mmap init_shared flags=4\ngmem h 6K").stmts[..] {
        [a, b] => {
            assert!(matches!(&a.op, Op::Gmem { name, size: 0, flags: 7 } if name == "g"));
            assert!(matches!(
                &b.op,
                Op::Gmem {
                    size: 6144,
                    flags: 0,
                    ..
                }
            ));
        }
        s => panic!("{s:?}"),
    }
    match &ok("gmem g 2M mmap\nmmap a 2M g shared foff=1M").stmts[1].op {
        Op::Mmap(m) => assert_eq!((m.object.as_deref(), m.foff), (Some("g"), 1 << 20)),
        o => panic!("{o:?}"),
    }
    let d = errs("memfd ram 1M\ngmem ram 2M");
    assert_eq!(d[0].message, "object `ram` is already defined");
    // Column counts characters, not bytes.
    let src = "mmap bü 2M anon private";
    let d = errs(src);
    assert_eq!((d[0].span.col, d[0].span.len), (6, 2));
}

/// The table names that produce each AST variant. Exhaustive: a new `Op` variant does not
/// compile until it is given a name here (and, by the test below, an entry in `OPS`).
fn names_of(op: &Op) -> &'static [&'static str] {
    match op {
        Op::Kernel { .. } => &["kernel"],
        Op::Memory { .. } => &["memory"],
        Op::Swap { .. } => &["swap"],
        Op::Memcg(_) => &["memcg"],
        Op::Sysfs { .. } => &["sysfs"],
        Op::Set { .. } => &["set"],
        Op::Catch { .. } => &["catch"],
        Op::Mmap(_) => &["mmap"],
        Op::Munmap { .. } => &["munmap"],
        Op::Mprotect { .. } => &["mprotect"],
        Op::Madvise { .. } => &["madvise"],
        Op::Access(_) => &["read", "write", "access"],
        Op::Repeat { .. } => &["repeat", "end"],
        Op::Checkpoint { .. } => &["checkpoint"],
        Op::PrctlSetThpDisable { .. } => &["prctl"],
        Op::Fork { .. } => &["fork"],
        Op::As { .. } => &["as"],
        Op::Exit { .. } => &["exit"],
        Op::KhugepagedScan { .. } => &["khugepaged"],
        Op::Sleep { .. } => &["sleep"],
        Op::Shrink => &["shrink"],
        Op::Kalloc { .. } => &["kalloc"],
        Op::Compact => &["compact"],
        Op::Uffd(_) => &["uffd"],
        Op::Mlock { .. } => &["mlock", "munlock"],
        Op::Mremap { .. } => &["mremap"],
        Op::Expect(_) => &["expect"],
        Op::Memfd { .. } => &["memfd"],
        Op::Gmem { .. } => &["gmem"],
        Op::Tmpfs { .. } => &["tmpfs"],
        Op::File { .. } => &["file"],
        Op::Ftruncate { .. } => &["ftruncate"],
        Op::Fallocate { .. } => &["fallocate"],
        Op::DiskFile { .. } => &["file"],
        Op::Msync { .. } => &["msync"],
        Op::Fsync { .. } => &["fsync"],
    }
}

fn collect_names(stmts: &[Stmt], out: &mut std::collections::BTreeSet<&'static str>) {
    for s in stmts {
        out.extend(names_of(&s.op));
        if let Op::Repeat { body, .. } = &s.op {
            collect_names(body, out);
        }
    }
}

#[test]
fn op_table_examples_parse_and_cover_every_op() {
    let mut table: Vec<&str> = OPS.iter().map(|o| o.name).collect();
    table.sort();
    let n = table.len();
    table.dedup();
    assert_eq!(table.len(), n, "duplicate op names in OPS");
    let mut produced = std::collections::BTreeSet::new();
    for op in OPS {
        let s = ok(op.example);
        // The example uses its own op as the keyword of some line.
        assert!(
            op.example
                .lines()
                .any(|l| l.split_whitespace().next() == Some(op.name)),
            "example of `{}` does not use it",
            op.name
        );
        collect_names(&s.stmts, &mut produced);
        assert!(
            !op.synopsis().is_empty() && !op.summary.is_empty(),
            "{}",
            op.name
        );
        assert!(op.synopsis().starts_with(op.name), "{}", op.synopsis());
    }
    let produced: Vec<&str> = produced.into_iter().collect();
    assert_eq!(produced, table, "OPS and the AST's op variants disagree");
}

// ---------------------------------------------------------------------------------------------
// Never panic

const TOKENS: &[&str] = &[
    "kernel",
    "memory",
    "sysfs",
    "set",
    "mmap",
    "munmap",
    "mprotect",
    "madvise",
    "read",
    "write",
    "access",
    "repeat",
    "end",
    "checkpoint",
    "expect",
    "when",
    "buf",
    "buf+0",
    "buf+2M",
    "b2",
    "2M",
    "4K",
    "0",
    "-1",
    "0x",
    "0xffffffffffffffff",
    "18446744073709551616",
    "16T",
    "anon",
    "private",
    "shared",
    "rw",
    "none",
    "prot=rw",
    "align=2M",
    "offset=4K",
    "populate",
    "HUGEPAGE",
    "MADV_DONTNEED",
    "PAGEOUT",
    "stride=4K",
    "stride=0",
    "random=10%",
    "random=5",
    "seed=1",
    "pattern=rw",
    "==",
    "!=",
    "<=",
    ">",
    "minflt",
    "errno",
    "EINVAL",
    "ok",
    "vmstat.thp_fault_alloc",
    "mthp.64kB.anon_fault_alloc",
    "mthp.2M.split",
    "khugepaged.full_scans",
    "smaps(buf).Rss",
    "smaps(",
    ")",
    "(",
    "pages(buf+0 4K).thp_pmd",
    "pages(buf",
    "kernel>=6.13",
    "kernel=",
    "hzp_wp_fault=thp",
    "enabled=always",
    "=",
    "+",
    "#",
    "é",
    "\u{0}",
    "\t",
    "\n",
    "\r\n",
    "{",
    "}",
    "2Q",
    "1_0",
    "6.18",
    "..",
    ".",
    "buf+",
    "+4K",
];

fn soup() -> impl Strategy<Value = String> {
    prop::collection::vec((0..TOKENS.len(), prop::bool::ANY), 0..60).prop_map(|v| {
        let mut s = String::new();
        for (i, nl) in v {
            s.push_str(TOKENS[i]);
            s.push(if nl { '\n' } else { ' ' });
        }
        s
    })
}

fn check_no_panic(src: &str) {
    match parse("p.thps", src) {
        Ok(_) => {}
        Err(d) => {
            assert!(!d.is_empty());
            for x in &d {
                assert!(x.span.line >= 1 && x.span.col >= 1, "{x}");
                let _ = x.render(src);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        check_no_panic(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn random_strings_never_panic(s in "\\PC{0,200}") {
        check_no_panic(&s);
    }

    #[test]
    fn token_soup_never_panics(s in soup()) {
        check_no_panic(&s);
    }

    #[test]
    fn mutated_scenarios_never_panic(
        edits in prop::collection::vec((any::<prop::sample::Index>(), 0u8..4, any::<char>(), 0..TOKENS.len()), 1..8)
    ) {
        let base = format!("{DESIGN_EXAMPLE}mmap b2 8M anon private\nrepeat 2\n access b2+4K 1M pattern=rw random=10% seed=3\n expect pages(b2+0 2M).thp_pmd == 0 when kernel>=6.13 hzp_wp_fault=thp\nend\nexpect errno == ok\n");
        let mut chars: Vec<char> = base.chars().collect();
        for (at, kind, c, tok) in edits {
            let i = at.index(chars.len() + 1);
            match kind {
                0 => chars.insert(i, c),
                1 => { if i < chars.len() { chars.remove(i); } }
                2 => { if i < chars.len() { chars[i] = c; } }
                _ => { for (k, tc) in TOKENS[tok].chars().enumerate() { chars.insert((i + k).min(chars.len()), tc); } }
            }
        }
        let s: String = chars.into_iter().collect();
        check_no_panic(&s);
    }
}

#[test]
fn uffd_writeprotect_stride() {
    same(
        &one_op("uffd unwp buf stride=4K"),
        &Op::Uffd(UffdOp::Writeprotect {
            range: r(None, None, 11, 3),
            wp: false,
            stride: 4 * K,
        }),
    );
    same(
        &one_op("uffd wp buf+0 2M"),
        &Op::Uffd(UffdOp::Writeprotect {
            range: r(Some(0), Some(2 * M), 9, 8),
            wp: true,
            stride: 0,
        }),
    );
    let pre = "mmap buf 4M anon private\n";
    one_err(
        &format!("{pre}uffd unwp buf stride=6K"),
        2,
        22,
        "stride `6K` must be a positive multiple of 4K",
        None,
    );
    one_err(
        &format!("{pre}uffd unwp buf stride=0"),
        2,
        22,
        "stride `0` must be a positive multiple of 4K",
        None,
    );
    one_err(
        &format!("{pre}uffd wp buf step=4K"),
        2,
        13,
        "unknown uffd wp option `step`",
        Some("usage: uffd wp RANGE [stride=SIZE]"),
    );
    one_err(
        &format!("{pre}uffd unwp buf stride=4Q"),
        2,
        22,
        "bad stride `4Q`",
        ANY,
    );
}

#[test]
fn kalloc_and_compact_parse_with_their_options_and_errors() {
    let s = ok("kalloc 8M order=2 type=reclaimable scatter=4\ncompact");
    assert!(matches!(
        s.stmts[0].op,
        Op::Kalloc {
            size: 0x80_0000,
            order: 2,
            reclaimable: true,
            scatter: 4
        }
    ));
    assert!(matches!(s.stmts[1].op, Op::Compact));
    assert!(matches!(
        ok("kalloc 4K").stmts[0].op,
        Op::Kalloc {
            size: 4096,
            order: 0,
            reclaimable: false,
            scatter: 0
        }
    ));
    let d = errs("kalloc 6K");
    assert!(d[0].message.contains("multiple of 4K"), "{}", d[0].message);
    let d = errs("kalloc 4M order=11");
    assert!(d[0].message.contains("MAX_PAGE_ORDER"), "{}", d[0].message);
    assert_eq!((d[0].span.line, d[0].span.col), (1, 11));
    let d = errs("kalloc 4M scatter=0");
    assert!(d[0].message.contains("at least 1"), "{}", d[0].message);
    let d = errs("kalloc 4M type=movable");
    assert_eq!(d.len(), 1);
}

#[test]
fn uffd_minor_register_and_continue() {
    same(
        &one_op("uffd register buf missing+minor"),
        &Op::Uffd(UffdOp::Register {
            range: r(None, None, 15, 3),
            missing: true,
            wp: false,
            minor: true,
        }),
    );
    same(
        &one_op("uffd continue buf+0 8K wp"),
        &Op::Uffd(UffdOp::Continue {
            range: r(Some(0), Some(8 * K), 15, 8),
            wp: true,
        }),
    );
    let pre = "mmap buf 4M anon private\n";
    one_err(
        &format!("{pre}uffd register buf minor+minor"),
        2,
        19,
        "register mode `minor` given twice",
        None,
    );
    one_err(
        &format!("{pre}uffd register buf major"),
        2,
        19,
        "unknown register mode `major`",
        Some("modes: missing, wp, minor, joined with `+` (missing+wp)"),
    );
}

#[test]
fn mmap_at() {
    let mm = |src: &str| match &ok(src).stmts[1].op {
        Op::Mmap(m) => m.clone(),
        o => panic!("{o:?}"),
    };
    let m = mm("mmap a 4M anon private\nmmap b 1M anon shared at=a+1M");
    assert_eq!(
        m.at.as_ref()
            .map(|a| (a.mapping.as_str(), a.offset, a.span)),
        Some(("a", M, sp(2, 26, 4)))
    );
    // A bare NAME is offset 0; past the old mapping's end is allowed (MAP_FIXED takes it).
    let m = mm("mmap a 4M anon private\nmmap b 8M zero private at=a");
    assert_eq!(m.at.map(|a| a.offset), Some(0));
    let m = mm("mmap a 4M anon private\nmmap b 1M anon private at=a+6M");
    assert_eq!(m.at.map(|a| a.offset), Some(6 * M));
    one_err(
        "mmap a 4M anon private\nmmap b 1M anon private at=c+1M",
        2,
        27,
        "unknown mapping `c`",
        Some(""),
    );
    one_err(
        "mmap a 4M anon private\nmmap b 1M anon private at=a+5K",
        2,
        29,
        "offset 5K is not a multiple of the 4K page size (at most 64T)",
        Some("page-aligned"),
    );
    one_err(
        "mmap a 4M anon private\nmmap b 1M anon private at=a+",
        2,
        29,
        "missing offset after `+`",
        Some("at=NAME+OFF"),
    );
    one_err(
        "mmap a 4M anon private\nmmap b 1M anon private at=a+1M align=2M",
        2,
        32,
        "`align` places a mapping in a free part of the arena; `at` names its address",
        Some("drop one of them"),
    );
    one_err(
        "mmap a 4M anon private at=a",
        1,
        27,
        "`at` names `a`, the mapping this line makes",
        Some("earlier"),
    );
}

#[test]
fn hugetlb_page_sizes() {
    use thpsim_kernel::hugetlb::HugePageSize;
    let s = ok("mmap a 2M anon private hugetlb\n\
                mmap b 2M anon private hugetlb=2M\n\
                mmap c 1G anon shared hugetlb=1G noreserve\n\
                memfd r 2G hugetlb=1G\n\
                memfd q 4M hugetlb\n");
    let sizes: Vec<Option<HugePageSize>> = s
        .stmts
        .iter()
        .map(|st| match &st.op {
            Op::Mmap(m) => m.hugetlb,
            Op::Memfd { hugetlb, .. } => *hugetlb,
            o => panic!("{o:?}"),
        })
        .collect();
    use HugePageSize::{Size1G, Size2M};
    assert_eq!(
        sizes,
        [
            Some(Size2M),
            Some(Size2M),
            Some(Size1G),
            Some(Size1G),
            Some(Size2M)
        ]
    );
    one_err(
        "mmap a 2M anon private hugetlb=4M\n",
        1,
        32,
        "bad hugetlb page size `4M`",
        Some("2M, 1G"),
    );
    one_err(
        "mmap a 2M anon private hugetlb=1G\n",
        1,
        8,
        "not a multiple of 1G",
        ANY,
    );
    one_err(
        "memfd r 1G hugetlb=1G\nmemfd s 3G hugetlb=1G\nmemfd t 4M hugetlb=1G\n",
        3,
        7,
        "must be a multiple of 1G",
        ANY,
    );
}

#[test]
fn mremap_forms_and_errors() {
    // Same-size move, resize in place, resize while moving.
    let dst = |off, col, n| RangeRef {
        mapping: "b2".into(),
        offset: off,
        len: None,
        span: sp(3, col, n),
    };
    same(
        &one_op("mremap buf b2+4K"),
        &Op::Mremap {
            range: r(None, None, 8, 3),
            dst: Some(dst(Some(4 * K), 12, 5)),
            size: None,
        },
    );
    same(
        &one_op("mremap buf+0 1M size=3M"),
        &Op::Mremap {
            range: r(Some(0), Some(1 << 20), 8, 8),
            dst: None,
            size: Some(3 << 20),
        },
    );
    same(
        &one_op("mremap buf b2 size=5000"),
        &Op::Mremap {
            range: r(None, None, 8, 3),
            dst: Some(dst(None, 12, 2)),
            size: Some(5000),
        },
    );
    // size=0 parses: the syscall's EINVAL.
    assert!(matches!(
        one_op("mremap buf size=0"),
        Op::Mremap { size: Some(0), .. }
    ));
    let pre = "mmap buf 4M anon private\nmmap b2 8M anon private\n";
    one_err(
        &format!("{pre}mremap buf"),
        3,
        11,
        "missing destination or new size",
        Some("mremap RANGE size=SIZE"),
    );
    one_err(
        &format!("{pre}mremap buf b2+0 4K"),
        3,
        12,
        "a new length is `size=SIZE`",
        Some("usage: mremap RANGE [DST[+OFF]] [size=SIZE]"),
    );
    one_err(
        &format!("{pre}mremap buf sise=4K"),
        3,
        12,
        "unknown mremap option `sise`",
        Some("did you mean `size`?"),
    );
    one_err(
        &format!("{pre}mremap buf+0 0 size=4K"),
        3,
        8,
        "zero-length source",
        Some("give the source a length"),
    );
    one_err(
        &format!("{pre}mremap buf size=65T"),
        3,
        17,
        "above 64T",
        None,
    );
}
