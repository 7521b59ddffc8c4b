//! Round-trips every unit file and drop-in of real systems byte for byte.
//!
//! Always scans this machine's `/usr/lib/systemd/system` (which must not be empty), plus
//! the directories in `REALMS_UNIT_CORPUS` (colon-separated): a unit directory, or an OS tree
//! (such as a debootstrap root) whose `usr/lib/systemd/{system,user}` and
//! `etc/systemd/{system,user}` are scanned. Symlinks (aliases, masks) are not followed.

use std::fs;
use std::path::{Path, PathBuf};

use realms_unit::UnitFile;
use realms_unit::UnitType;

fn is_unit_like(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let in_dropin_dir = path
        .parent()
        .and_then(Path::file_name)
        .and_then(|n| n.to_str())
        .is_some_and(|d| d.ends_with(".d"));
    match name.rsplit_once('.') {
        Some((_, ext)) if UnitType::from_suffix(ext).is_some() => true,
        Some((_, "conf")) => in_dropin_dir,
        _ => false,
    }
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries =
        fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
    for entry in entries {
        let entry = entry.unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
        let path = entry.path();
        let kind = entry.file_type().expect("file type");
        if kind.is_dir() {
            walk(&path, out);
        } else if kind.is_file() && is_unit_like(&path) {
            out.push(path);
        }
    }
}

/// Rebuild the file from its entries alone (fresh `Key=value` lines) and check that reading
/// it back gives the same sections, keys and values.
fn rewrite_matches(f: &UnitFile) -> Result<(), String> {
    let mut fresh = UnitFile::new();
    for section in f.sections() {
        fresh
            .add_section(section.name())
            .map_err(|e| e.to_string())?;
        for e in section.entries() {
            fresh
                .append(section.name(), e.key(), e.value())
                .map_err(|e| e.to_string())?;
        }
    }
    let back = UnitFile::parse(&fresh.to_text()).map_err(|e| e.to_string())?;
    let flat = |f: &UnitFile| -> Vec<(String, String, String)> {
        f.sections()
            .iter()
            .flat_map(|s| {
                s.entries().map(|e| {
                    (
                        s.name().to_owned(),
                        e.key().to_owned(),
                        e.value().to_owned(),
                    )
                })
            })
            .collect()
    };
    if flat(&back) != flat(f) {
        return Err("entries differ after rewriting them as fresh lines".to_owned());
    }
    Ok(())
}

/// Parse and rewrite every file; returns how many, panicking with every failure.
fn round_trip_all(files: &[PathBuf]) -> usize {
    let mut failures = Vec::new();
    for path in files {
        let bytes =
            fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let Ok(text) = String::from_utf8(bytes) else {
            failures.push(format!("{}: not UTF-8", path.display()));
            continue;
        };
        match UnitFile::parse(&text) {
            Ok(f) if f.to_text() == text => {
                if let Err(e) = rewrite_matches(&f) {
                    failures.push(format!("{}: {e}", path.display()));
                }
            }
            Ok(_) => failures.push(format!("{}: rewritten text differs", path.display())),
            Err(e) => failures.push(e.in_file(path).to_string()),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} files failed:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
    files.len()
}

#[test]
fn this_machines_system_units_round_trip() {
    let dir = Path::new("/usr/lib/systemd/system");
    let mut files = Vec::new();
    walk(dir, &mut files);
    assert!(
        !files.is_empty(),
        "no unit files under {}: this test needs systemd's units installed (apt-get install systemd)",
        dir.display()
    );
    for extra in [
        "/usr/lib/systemd/user",
        "/etc/systemd/system",
        "/etc/systemd/user",
    ] {
        if Path::new(extra).is_dir() {
            walk(Path::new(extra), &mut files);
        }
    }
    let n = round_trip_all(&files);
    eprintln!("round-tripped {n} files from this machine");
}

#[test]
fn corpus_from_env_round_trips() {
    let Some(spec) = std::env::var_os("REALMS_UNIT_CORPUS") else {
        eprintln!("REALMS_UNIT_CORPUS not set: only this machine's units were checked");
        return;
    };
    for dir in std::env::split_paths(&spec) {
        assert!(
            dir.is_dir(),
            "REALMS_UNIT_CORPUS names {}, which is not a directory",
            dir.display()
        );
        let mut files = Vec::new();
        if dir.join("usr/lib/systemd").is_dir() {
            for sub in [
                "usr/lib/systemd/system",
                "usr/lib/systemd/user",
                "etc/systemd/system",
                "etc/systemd/user",
            ] {
                if dir.join(sub).is_dir() {
                    walk(&dir.join(sub), &mut files);
                }
            }
        } else {
            walk(&dir, &mut files);
        }
        assert!(
            !files.is_empty(),
            "no unit files found under {}",
            dir.display()
        );
        let n = round_trip_all(&files);
        eprintln!("round-tripped {n} files from {}", dir.display());
    }
}
