//! `thpsim import --pid`: a host worker builds a known layout (PMD THP, huge zero PMD, a
//! PTE-mapped order-9 folio with a hole, mTHP folios whole and trimmed, order-0 and zero
//! pages, VMAs split by madvise/mprotect/mlock), `import` reads it, and `thpsim run` of the
//! scenario must show exactly the page map the host shows, mapping by mapping; the import's
//! own expects (one per class and mapping, every VMA of the worker) must pass.

mod common;
use common::{host_lock, host_ready, thpsim};

use thpsim_host::{HostBackend, HostOptions};
use thpsim_kernel::types::{Advice, Prot};
use thpsim_scenario::ast::Pattern;
use thpsim_scenario::backend::{Backend, BackendOp, Setup};

const K4: u64 = 4096;
const M: u64 = 1 << 20;

fn op(b: &mut HostBackend, op: BackendOp) {
    let r = b.exec(&op).unwrap_or_else(|e| panic!("{op:?}: {e}"));
    assert!(r.result.is_ok(), "{op:?}: {:?}", r.result);
}

fn touch(b: &mut HostBackend, addr: u64, len: u64, stride: u64, pattern: Pattern) {
    op(
        b,
        BackendOp::Access {
            addr,
            len,
            stride,
            pattern,
            subset: None,
        },
    );
}

fn mmap(b: &mut HostBackend, addr: u64, len: u64) {
    op(
        b,
        BackendOp::Mmap {
            addr,
            len,
            prot: Prot::RW,
            shared: false,
            populate: false,
            fixed: false,
            file: None,
        },
    );
}

fn madvise(b: &mut HostBackend, addr: u64, len: u64, advice: Advice) {
    op(b, BackendOp::Madvise { addr, len, advice });
}

fn sysfs(b: &mut HostBackend, knob: &str, value: &str) {
    op(
        b,
        BackendOp::Sysfs {
            knob: knob.into(),
            value: value.into(),
        },
    );
}

#[test]
fn import_reproduces_a_worker_page_map() {
    let _l = host_lock();
    if !host_ready() {
        return;
    }
    let mut b = HostBackend::new(HostOptions {
        allow_sysfs: true,
        ..Default::default()
    });
    // Every knob pinned (journaled, restored by finish) to the model's defaults plus these.
    let setup = Setup {
        profile: "6.18".into(),
        switches: vec![],
        memory: 16 << 30,
        swap: 0,
        swap_device: thpsim_kernel::SwapDevice::Zram,
        memcg: None,
        sysfs: vec![
            ("enabled".into(), "madvise".into()),
            ("hugepages-2048kB.enabled".into(), "inherit".into()),
            ("use_zero_page".into(), "1".into()),
        ],
        arena_len: 1 << 30,
    };
    if let Err(e) = b.setup(&setup) {
        assert!(
            e.is_not_runnable() && std::env::var("CI").as_deref() != Ok("true"),
            "setup: {e}"
        );
        eprintln!("skipping: {e}");
        return;
    }
    // A: 8 MiB with MADV_HUGEPAGE, one kind of slot each.
    let a = 0;
    mmap(&mut b, a, 8 * M);
    // mTHP before MADV_HUGEPAGE, so no PMD fault takes the slot.
    sysfs(&mut b, "hugepages-64kB.enabled", "always");
    touch(&mut b, a + 6 * M, 256 * 1024, 64 * 1024, Pattern::Write); // four 64 KiB folios
    sysfs(&mut b, "hugepages-64kB.enabled", "never");
    madvise(&mut b, a, 8 * M, Advice::Hugepage);
    touch(&mut b, a, K4, 0, Pattern::Write); // PMD THP
    touch(&mut b, a + 2 * M, K4, 0, Pattern::Read); // huge zero PMD
    touch(&mut b, a + 4 * M, K4, 0, Pattern::Write); // a THP, then a 64 KiB hole: PTE-mapped
    madvise(&mut b, a + 5 * M, 64 * 1024, Advice::Dontneed);
    touch(&mut b, a + 7 * M, 16 * 1024, K4, Pattern::Write); // order 0 in a PTE slot
    touch(&mut b, a + 7 * M + 512 * 1024, 8 * 1024, K4, Pattern::Read); // zero pages
    madvise(&mut b, a + 6 * M + 80 * 1024, 16 * 1024, Advice::Dontneed); // trim one mTHP
                                                                         // B: misaligned, no THP: order-0 and zero pages, part NOHUGEPAGE.
    let bb = 10 * M + 12 * K4;
    mmap(&mut b, bb, M);
    touch(&mut b, bb, 64 * 1024, K4, Pattern::Write);
    touch(&mut b, bb + 128 * 1024, 32 * 1024, K4, Pattern::Read);
    madvise(&mut b, bb + 512 * 1024, 256 * 1024, Advice::Nohugepage);
    // C: written, half read-only, a locked part.
    let c = 12 * M;
    mmap(&mut b, c, 2 * M);
    touch(&mut b, c + M, M, K4, Pattern::Write);
    op(
        &mut b,
        BackendOp::Mprotect {
            addr: c + M,
            len: 512 * 1024,
            prot: Prot::R,
        },
    );
    op(
        &mut b,
        BackendOp::Mlock {
            addr: c + M + 512 * 1024,
            len: 64 * 1024,
            lock: true,
        },
    );

    let ranges = [(a, 8 * M), (bb, M), (c, 2 * M)];
    let host = b.snapshot(&ranges).unwrap();
    let base = b.arena_base().unwrap();
    let pid = b.worker_pid().unwrap();
    let out = std::env::temp_dir().join(format!("thpsim-import-test-{}.thps", std::process::id()));
    let (rc, _, err) = thpsim(&[
        "import",
        "--pid",
        &pid.to_string(),
        "--out",
        out.to_str().unwrap(),
    ]);
    b.finish().unwrap();
    assert_eq!(rc, 0, "import: {err}");
    let (rc, json, err) = thpsim(&["run", out.to_str().unwrap(), "--json"]);
    let text = std::fs::read_to_string(&out).unwrap();
    let _ = std::fs::remove_file(&out);
    assert_eq!(rc, 0, "run of the imported scenario: {err}\n{text}");
    let res: serde_json::Value = serde_json::from_str(&json).unwrap();
    let cp = res["checkpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["label"] == "imported")
        .expect("checkpoint imported");
    for (i, (off, _)) in ranges.iter().enumerate() {
        let name = format!("m{:x}", base + off);
        let m = cp["mappings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == name.as_str())
            .unwrap_or_else(|| panic!("mapping {name} in the imported scenario:\n{text}"));
        let model: Vec<(String, u64)> = serde_json::from_value(m["pages"].clone()).unwrap();
        let want: Vec<(String, u64)> = host.mappings[i]
            .pages
            .iter()
            .map(|(b, n)| (b.label(), *n))
            .collect();
        assert_eq!(model, want, "page map of {name}\n{text}");
        let smaps = &m["smaps"];
        let hs = &host.mappings[i].smaps;
        assert_eq!(smaps["anon_huge_pages"], hs.anon_huge_pages, "{name}");
        assert_eq!(smaps["rss"], hs.rss, "{name}");
    }
    // The layout really has every kind of page the test means to import.
    let labels: Vec<String> = host
        .mappings
        .iter()
        .flat_map(|m| m.pages.iter().map(|(b, _)| b.label()))
        .collect();
    for want in [
        "thp_pmd",
        "huge_zero",
        "thp_pte:o9",
        "thp_pte:o4",
        "anon",
        "zero",
    ] {
        assert!(labels.iter().any(|l| l == want), "{want} in {labels:?}");
    }
    assert!(text.contains("madvise"), "{text}");
    assert!(text.contains("NOHUGEPAGE") && text.contains("mlock") && text.contains(" r\n"));
}
