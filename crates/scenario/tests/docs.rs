//! docs/scenario-language.md must be exactly what `language_reference()` generates.
//! `THPSIM_BLESS=1 cargo test -p thpsim-scenario --test docs` rewrites it.

use std::path::PathBuf;

fn doc_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/scenario-language.md")
}

#[test]
fn language_reference_is_up_to_date() {
    let want = thpsim_scenario::docs::language_reference();
    let path = doc_path();
    if std::env::var_os("THPSIM_BLESS").is_some() {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        std::fs::write(&path, &want).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        return;
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    if have != want {
        let line = have
            .lines()
            .zip(want.lines())
            .position(|(a, b)| a != b)
            .map(|i| i + 1)
            .unwrap_or_else(|| have.lines().count().min(want.lines().count()) + 1);
        panic!(
            "{} is out of date (first difference at line {line}).\n\
             It is generated from crates/scenario/src/table.rs and the kernel crate's name lists;\n\
             regenerate it with:\n\n    THPSIM_BLESS=1 cargo test -p thpsim-scenario --test docs\n",
            path.display()
        );
    }
}

#[test]
fn reference_mentions_every_op_and_name() {
    let doc = thpsim_scenario::docs::language_reference();
    for op in thpsim_scenario::table::OPS {
        assert!(doc.contains(&format!("### {}\n", op.name)), "{}", op.name);
    }
    for i in thpsim_kernel::vmstat::VmItem::ALL {
        assert!(doc.contains(&format!("`{}`", i.name())), "{}", i.name());
    }
    for k in thpsim_kernel::sysfs::knobs() {
        assert!(doc.contains(&format!("`{}`", k.name)), "{}", k.name);
    }
    for (s, _, _) in thpsim_kernel::profile::SWITCHES {
        assert!(doc.contains(&format!("`{s}`")), "{s}");
    }
    for f in thpsim_kernel::observe::Smaps::FIELDS {
        assert!(doc.contains(&format!("`{f}`")), "{f}");
    }
}

#[test]
fn reference_example_parses() {
    // The example embedded at the top of the reference is the one the parser must accept.
    let s = thpsim_scenario::parse("design.thps", thpsim_scenario::docs::DESIGN_EXAMPLE);
    assert!(s.is_ok(), "{:?}", s.err());
}
