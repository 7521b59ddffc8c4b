//! systemd's TEST-29 (v252.31), its raw-image half (squashfs images, dm-verity sidecars,
//! extensions as raw images), run in the guest by one script (test29_raw.sh) once with the real
//! portablectl and once with `realms portable`; the host tier runs the directory half.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use realms_tests::guest::{CaseOutcome, GuestCase};
use realms_tests::run::run;

use super::portable::TREE;

/// The guest case that runs the script with the real portablectl.
pub const PORTABLECTL: &str = "test29_raw_portablectl";
/// The guest case that runs the script with `realms portable`.
pub const REALMS: &str = "test29_raw_realms";

const SCRIPT: &str = include_str!("test29_raw.sh");

/// TEST-29's raw images as test/test-functions makes them, built in `dir` (squashfs; minimal_0
/// and minimal_1 with the `.verity` and `.roothash` sidecars of `veritysetup format`), and where
/// they go in the guest (/usr/share).
pub fn prepare(dir: &Path) -> Vec<(PathBuf, String)> {
    realms_tests::require::tool("mksquashfs", "squashfs-tools");
    realms_tests::require::tool("veritysetup", "cryptsetup-bin");
    // The guest is a snapshot of the Debian base: the extensions' ID/VERSION_ID must be its.
    let os_release =
        fs::read_to_string(realms_tests::fixtures::debian_base().join("usr/lib/os-release"))
            .expect("read the Debian base's usr/lib/os-release");
    let trees = dir.join("t29");
    realms_tests::test29::images(&trees, &os_release);
    let mut files = Vec::new();
    for name in ["minimal_0", "minimal_1", "app0", "app1"] {
        let raw = dir.join(format!("{name}.raw"));
        // mksquashfs keeps xattrs by default: app1's user.extension-release.strict=false.
        run(Command::new("mksquashfs")
            .arg(trees.join(name))
            .arg(&raw)
            .args(["-noappend", "-quiet", "-all-root"]));
        files.push((raw.clone(), format!("/usr/share/{name}.raw")));
        if name.starts_with("minimal") {
            let verity = dir.join(format!("{name}.verity"));
            let out = run(Command::new("veritysetup")
                .arg("format")
                .arg(&raw)
                .arg(&verity));
            let text = String::from_utf8_lossy(&out.stdout);
            let hash = text
                .lines()
                .find_map(|l| l.strip_prefix("Root hash:"))
                .expect("veritysetup printed a root hash")
                .trim()
                .to_owned();
            let roothash = dir.join(format!("{name}.roothash"));
            fs::write(&roothash, hash).unwrap();
            files.push((verity, format!("/usr/share/{name}.verity")));
            files.push((roothash, format!("/usr/share/{name}.roothash")));
        }
    }
    files
}

/// The two guest cases: the same script, the tool as its parameter.
pub fn cases() -> Vec<GuestCase> {
    [(PORTABLECTL, "portablectl"), (REALMS, "realms portable")]
        .into_iter()
        // A TCG guest on a loaded machine: eleven cases of attach/reattach with dm-verity.
        .map(|(name, tool)| {
            GuestCase::new(name, &format!("{TREE}{SCRIPT}\nT29 {tool} 2>&1")).with_timeout(900)
        })
        .collect()
}

/// Each TEST-29 case a run reached and whether it passed (`PASS` or `FAIL(rc)`), in order.
pub fn results(case: &CaseOutcome) -> Vec<(String, String)> {
    case.output
        .lines()
        .filter_map(|l| l.strip_prefix("=== RESULT "))
        .filter_map(|l| l.split_once(' '))
        .map(|(name, result)| (name.to_owned(), result.to_owned()))
        .collect()
}

/// The cases the script defines (its `T29_CASES` list), in order.
pub fn case_names() -> Vec<String> {
    let list = SCRIPT
        .split_once("T29_CASES=(")
        .and_then(|(_, rest)| rest.split_once(')'))
        .expect("test29_raw.sh has a T29_CASES=(...) list")
        .0;
    list.split_whitespace().map(str::to_owned).collect()
}

/// A table of the outcome of every case with both tools, for the test's failure message.
pub fn table(theirs: &[(String, String)], ours: &[(String, String)]) -> String {
    let theirs: BTreeMap<_, _> = theirs.iter().cloned().collect();
    let ours: BTreeMap<_, _> = ours.iter().cloned().collect();
    let none = "not reached".to_owned();
    case_names()
        .iter()
        .map(|c| {
            format!(
                "{c:<52} portablectl: {:<12} realms: {}\n",
                theirs.get(c).unwrap_or(&none),
                ours.get(c).unwrap_or(&none)
            )
        })
        .collect()
}

/// The attach directories after each attach of a run (`=== TREE LABEL LINE`), by label.
pub fn trees(case: &CaseOutcome) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in case.output.lines() {
        if let Some((label, rest)) = line
            .strip_prefix("=== TREE ")
            .and_then(|l| l.split_once(' '))
        {
            out.entry(label.to_owned())
                .or_default()
                .push(rest.to_owned());
        }
    }
    out
}

/// Where two runs' trees differ: per label, the lines only one of them has.
pub fn tree_differences(
    theirs: &BTreeMap<String, Vec<String>>,
    ours: &BTreeMap<String, Vec<String>>,
) -> String {
    let empty = Vec::new();
    let mut out = String::new();
    for label in theirs
        .keys()
        .chain(ours.keys())
        .collect::<std::collections::BTreeSet<_>>()
    {
        let (t, o) = (
            theirs.get(label).unwrap_or(&empty),
            ours.get(label).unwrap_or(&empty),
        );
        for l in t.iter().filter(|l| !o.contains(l)) {
            out.push_str(&format!("{label}: portablectl only: {l}\n"));
        }
        for l in o.iter().filter(|l| !t.contains(l)) {
            out.push_str(&format!("{label}: realms only:      {l}\n"));
        }
    }
    out
}
