//! One way to vary anything from the command line (`--set KEY=VALUE`, `--grid KEY=V1,V2`):
//! a key is a kernel profile (`kernel`), a behaviour switch (`thpsim_kernel::profile::SWITCHES`)
//! or a THP sysfs knob (`thpsim_kernel::sysfs::knobs`, by scenario name such as
//! `khugepaged.max_ptes_none` or by file such as `khugepaged/max_ptes_none`).

use thpsim_kernel::{profile, sysfs};

/// What a `--set` key names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum SettingKind {
    /// `kernel=6.12`: the kernel profile (as `--kernel`).
    Profile,
    /// A behaviour switch (as a scenario's `set` line).
    Switch,
    /// A sysfs knob (as a scenario's `sysfs` line, applied after it).
    Knob,
}

/// Keys that select the kernel profile.
pub const PROFILE_KEYS: &[&str] = &["kernel", "profile"];

/// A classified `--set` item: the canonical key (sysfs knobs by scenario name) and its value.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Setting {
    pub kind: SettingKind,
    pub key: String,
    pub value: String,
}

/// Every key `--set` accepts, for hints and completions.
pub fn all_keys() -> Vec<String> {
    let mut v: Vec<String> = PROFILE_KEYS.iter().map(|s| s.to_string()).collect();
    v.extend(profile::SWITCHES.iter().map(|s| s.0.to_string()));
    v.extend(sysfs::knobs().into_iter().map(|k| k.name));
    v
}

/// Classifies and checks one `KEY=VALUE`: an unknown key gets the closest known key as a
/// hint, a value the switch or knob refuses gets the accepted values.
pub fn classify(key: &str, value: &str) -> Result<Setting, String> {
    if PROFILE_KEYS.contains(&key) {
        if profile::profile(value).is_none() {
            let names: Vec<&str> = profile::profiles().iter().map(|p| p.name).collect();
            return Err(format!(
                "unknown kernel profile `{value}` (known: {})",
                names.join(", ")
            ));
        }
        return Ok(Setting {
            kind: SettingKind::Profile,
            key: "kernel".into(),
            value: value.into(),
        });
    }
    if profile::SWITCHES.iter().any(|s| s.0 == key) {
        profile::profile(profile::DEFAULT_PROFILE)
            .expect("default profile")
            .switches
            .set(key, value)?;
        return Ok(Setting {
            kind: SettingKind::Switch,
            key: key.into(),
            value: value.into(),
        });
    }
    // The file form (`hugepages-64kB/enabled`, with or without the THP directory) names the
    // same knob as its scenario name.
    let file = key
        .trim_start_matches("/sys/kernel/mm/transparent_hugepage/")
        .trim_start_matches("transparent_hugepage/");
    let knobs = sysfs::knobs();
    if let Some(k) = knobs.iter().find(|k| k.name == file || k.path == file) {
        return match sysfs::Sysfs::default().set(&k.name, value) {
            Ok(()) => Ok(Setting {
                kind: SettingKind::Knob,
                key: k.name.clone(),
                value: value.into(),
            }),
            Err(sysfs::KnobError::BadValue { expected }) => Err(format!(
                "sysfs knob `{}` takes {expected}, not `{value}`",
                k.name
            )),
            Err(sysfs::KnobError::Unknown { hint }) => {
                Err(format!("unknown sysfs knob `{}`; {hint}", k.name))
            }
        };
    }
    let keys = all_keys();
    let hint = thpsim_kernel::util::closest(key, keys.iter().map(|s| s.as_str()))
        .map(|c| format!("did you mean `{c}`?"))
        .unwrap_or_else(|| "`thpsim knobs` lists every profile, switch and sysfs knob".into());
    Err(format!(
        "unknown setting `{key}` (not a kernel profile key, behaviour switch or sysfs knob); {hint}"
    ))
}

/// Parses `KEY=VALUE[,KEY=VALUE…]` items (each repeatable flag one item) and classifies them.
pub fn parse_items(items: &[String]) -> Result<Vec<Setting>, String> {
    let mut v = Vec::new();
    for item in items {
        for kv in item.split(',').filter(|s| !s.is_empty()) {
            let (k, val) = kv
                .split_once('=')
                .ok_or_else(|| format!("`{kv}` is not KEY=VALUE"))?;
            v.push(classify(k.trim(), val.trim())?);
        }
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_of_key_is_accepted() {
        let s = parse_items(&[
            "enabled=always".into(),
            "hugepages-64kB.enabled=madvise,khugepaged/max_ptes_none=0".into(),
            "hzp_wp_fault=split".into(),
            "kernel=6.12".into(),
        ])
        .unwrap();
        let got: Vec<(SettingKind, &str, &str)> = s
            .iter()
            .map(|s| (s.kind, s.key.as_str(), s.value.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                (SettingKind::Knob, "enabled", "always"),
                (SettingKind::Knob, "hugepages-64kB.enabled", "madvise"),
                (SettingKind::Knob, "khugepaged.max_ptes_none", "0"),
                (SettingKind::Switch, "hzp_wp_fault", "split"),
                (SettingKind::Profile, "kernel", "6.12"),
            ]
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_are_explained() {
        let e = classify("khugepaged.max_pte_none", "0").unwrap_err();
        assert!(
            e.contains("did you mean `khugepaged.max_ptes_none`?"),
            "{e}"
        );
        let e = classify("enabeld", "always").unwrap_err();
        assert!(e.contains("did you mean `enabled`?"), "{e}");
        let e = classify("khugepaged.max_ptes_none", "512").unwrap_err();
        assert!(e.contains("takes 0..=511, not `512`"), "{e}");
        let e = classify("hzp_wp_fault", "maybe").unwrap_err();
        assert!(e.contains("split or thp"), "{e}");
        let e = classify("kernel", "5.4").unwrap_err();
        assert!(e.contains("known: 6.12, 6.18"), "{e}");
        assert!(parse_items(&["enabled".into()]).is_err());
    }
}
