//! The public suffix list committed for the Python side (`models/psl/public_suffix_list.dat`)
//! is byte for byte the list the `psl` crate compiles in (its `data/rules.txt`), so training
//! and serving cut names at the same suffixes (docs/contracts.md, "Names"). A `psl` upgrade
//! fails this test until `models/psl/` is refreshed (models/psl/README.md says how).

use std::path::{Path, PathBuf};
use std::process::Command;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("core/ has a parent")
        .to_path_buf()
}

/// The host target triple (`cargo metadata` without a platform filter would want every
/// platform's crates, which an offline machine does not have).
fn host_triple() -> String {
    let out = Command::new("rustc")
        .arg("-vV")
        .output()
        .expect("rustc -vV runs");
    let text = String::from_utf8(out.stdout).expect("rustc -vV prints UTF-8");
    text.lines()
        .find_map(|l| l.strip_prefix("host: "))
        .expect("rustc -vV names the host")
        .to_owned()
}

/// The directory cargo unpacked the locked `psl` crate into, from `cargo metadata`.
fn psl_crate_dir() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--locked", "--offline"])
        .args(["--filter-platform", &host_triple()])
        .current_dir(workspace_root())
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata is JSON");
    let packages = meta["packages"].as_array().expect("packages is a list");
    let psl = packages
        .iter()
        .find(|p| p["name"] == "psl")
        .expect("the psl crate is a dependency");
    let manifest = psl["manifest_path"].as_str().expect("manifest_path");
    Path::new(manifest)
        .parent()
        .expect("manifest has a folder")
        .to_path_buf()
}

#[test]
fn committed_list_is_the_psl_crates_list() {
    let crate_dir = psl_crate_dir();
    let crates = std::fs::read(crate_dir.join("data/rules.txt")).expect("psl data/rules.txt");
    let committed_path = workspace_root().join("models/psl/public_suffix_list.dat");
    let committed = std::fs::read(&committed_path).expect("models/psl/public_suffix_list.dat");
    assert!(
        crates == committed,
        "{} differs from {}/data/rules.txt: copy it over and update models/psl/README.md",
        committed_path.display(),
        crate_dir.display()
    );
    let version = std::fs::read_to_string(workspace_root().join("models/psl/README.md"))
        .expect("models/psl/README.md");
    let crate_name = crate_dir
        .file_name()
        .and_then(|n| n.to_str())
        .expect("psl-<version>");
    assert!(
        version.contains(crate_name),
        "models/psl/README.md does not name {crate_name}"
    );
}

#[test]
fn the_crate_applies_every_committed_plain_rule() {
    // A second, behavioural check: each plain rule of the committed file is a suffix to the
    // crate (the rules with wildcards and exceptions are covered by the byte comparison).
    let text = std::fs::read_to_string(workspace_root().join("models/psl/public_suffix_list.dat"))
        .expect("models/psl/public_suffix_list.dat");
    let rules: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("//"))
        .collect();
    assert!(rules.len() > 9000, "only {} rules", rules.len());
    let wild: std::collections::HashSet<&str> =
        rules.iter().filter_map(|r| r.strip_prefix("*.")).collect();
    let mut checked = 0;
    for rule in rules
        .iter()
        .filter(|r| r.is_ascii() && !r.contains(['*', '!']))
    {
        if wild.contains(rule) {
            continue;
        }
        let name = format!("zz.{rule}");
        assert_eq!(psl::suffix_str(&name), Some(*rule), "{name}");
        checked += 1;
    }
    assert!(checked > 8000, "only {checked} rules checked");
}
