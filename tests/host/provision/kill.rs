//! `realms provision apply` killed with SIGKILL at every failpoint it passes (fetching,
//! verified, unpacked, installed, attached, detached, and every atomic write and attach step
//! below them), installing two packages and upgrading one: right after the kill no image under
//! /var/lib/portables is incomplete, and the next apply finishes the work, leaving exactly what
//! a clean apply leaves (state.json, images, attach directories, cache), no staging directory,
//! no journal, and a plan that finds everything unchanged.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Output};

use realms_tests::failpoints::{diff, failpoints_bin, tree_hash};
use realms_tests::failpoints_portable::{journal_files, snapshot};
use realms_tests::run::{run, tail};

use super::{Publisher, package};

/// The failpoint `realms --root ROOT provision apply`, with `env`.
pub(super) fn apply(root: &Path, env: &[(&str, &str)]) -> Output {
    Command::new(failpoints_bin())
        .arg("--root")
        .arg(root)
        .args(["provision", "apply"])
        .env_remove("FAILPOINTS")
        .env_remove("REALMS_FAILPOINT_TRACE")
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

#[track_caller]
fn apply_ok(root: &Path, at: &str) -> String {
    let out = apply(root, &[]);
    assert!(
        out.status.success(),
        "{at}: apply failed:\n{}",
        tail(&out.stderr)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn names_below(dir: &Path, out: &mut Vec<String>, top: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        out.push(p.strip_prefix(top).unwrap().display().to_string());
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            names_below(&p, out, top);
        }
    }
}

/// What provisioning is made of under `root`: the state file, every image by content, the
/// attach directories, the journal files, and the names in the state and cache directories.
pub(super) fn view(root: &Path) -> BTreeMap<String, String> {
    let mut v = BTreeMap::new();
    v.insert(
        "state.json".into(),
        fs::read_to_string(root.join("var/lib/realms/provision/state.json")).unwrap_or_default(),
    );
    for e in fs::read_dir(root.join("var/lib/portables"))
        .unwrap()
        .flatten()
    {
        v.insert(
            format!("image {}", e.file_name().to_string_lossy()),
            tree_hash(&e.path()),
        );
    }
    v.insert("attached".into(), snapshot(root).join("\n"));
    v.insert("journal".into(), journal_files(root).join(" "));
    for dir in ["var/lib/realms/provision", "var/cache/realms/provision"] {
        let mut names = Vec::new();
        names_below(&root.join(dir), &mut names, root);
        names.sort();
        v.insert(dir.into(), names.join(" "));
    }
    v
}

/// Copies the template root to a fresh directory.
pub(super) fn fresh(template: &Path, work: &Path, label: &str) -> std::path::PathBuf {
    let dir = work.join(label);
    let _ = fs::remove_dir_all(&dir);
    run(Command::new("cp").arg("-a").arg(template).arg(&dir));
    dir
}

fn manifest(root: &Path, repo: &str, kp: &str) {
    fs::write(
        root.join("etc/realms/provision.yaml"),
        format!(
            "composable:\n  default_repository: {repo}\n  packages:\n\
             \x20   - name: kp\n      version: '{kp}'\n      enable: [kp.service]\n      start: [kp.service]\n\
             \x20   - name: kq\n      profile: strict\n      install_method: copy\n"
        ),
    )
    .unwrap();
}

/// Kills apply on a copy of `template` at every failpoint pass in turn; returns the kills.
fn kill_everywhere(label: &str, template: &Path, work: &Path) -> usize {
    let clean = fresh(template, work, &format!("{label}-clean"));
    let trace_file = work.join(format!("{label}.trace"));
    let out = apply(
        &clean,
        &[("REALMS_FAILPOINT_TRACE", trace_file.to_str().unwrap())],
    );
    assert!(out.status.success(), "{label}: {}", tail(&out.stderr));
    let new = view(&clean);
    let trace = fs::read_to_string(&trace_file).unwrap();
    let passes: Vec<&str> = trace.lines().collect();
    for step in [
        "provision-fetched",
        "provision-verified",
        "provision-unpacked",
        "provision-installed",
        "provision-attached",
    ] {
        assert!(
            passes.contains(&step),
            "{label}: {step} not passed: {passes:?}"
        );
    }
    for (i, point) in passes.iter().enumerate() {
        let earlier = passes[..i].iter().filter(|p| *p == point).count();
        let spec = format!("{point}={earlier}*off->return");
        let at = format!(
            "{label}: killed at {spec} (pass {} of {})",
            i + 1,
            passes.len()
        );
        let root = fresh(template, work, &format!("{label}-{i}"));
        let out = apply(&root, &[("FAILPOINTS", &spec)]);
        assert_eq!(
            out.status.signal(),
            Some(9),
            "{at}: not killed:\n{}",
            tail(&out.stderr)
        );
        // Nothing half-installed is visible: an image under its final name is complete.
        for e in fs::read_dir(root.join("var/lib/portables"))
            .unwrap()
            .flatten()
        {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let old = tree_hash(&template.join("var/lib/portables").join(&name));
            let now = tree_hash(&e.path());
            assert!(
                Some(&now) == new.get(&format!("image {name}")) || now == old,
                "{at}: {name} is incomplete"
            );
        }
        let said = apply_ok(&root, &at);
        let got = view(&root);
        assert!(
            got == new,
            "{at}: the next apply ({said}) left:\n{}",
            diff(&new, &got)
        );
        let out = Command::new(failpoints_bin())
            .arg("--root")
            .arg(&root)
            .args(["provision", "plan", "--json"])
            .output()
            .unwrap();
        let plan = String::from_utf8_lossy(&out.stdout);
        assert_eq!(plan.matches("\"unchanged\"").count(), 2, "{at}: {plan}");
        fs::remove_dir_all(&root).unwrap();
    }
    passes.len()
}

#[test]
fn apply_killed_at_every_failpoint_is_finished_by_the_next_apply() {
    let work_dir = tempfile::tempdir().unwrap();
    let work = work_dir.path();
    let p = Publisher::new(work);
    let serve = p.serve.clone();
    let kp1 = package(work, "kp", "1");
    let kp2 = package(work, "kp", "2");
    let kq1 = package(work, "kq", "1");
    p.publish("repo", &[&kp1, &kp2, &kq1], &[]);
    let repo = format!("file://{}", serve.join("repo").display());

    // Install: nothing there yet.
    let install = work.join("template-install");
    p.trust_in(&install);
    fs::create_dir_all(install.join("var/lib/portables")).unwrap();
    manifest(&install, &repo, "1");
    // Upgrade: kp 1 and kq 1 applied, then the manifest asks for kp 2.
    let upgrade = fresh(&install, work, "template-upgrade");
    apply_ok(&upgrade, "making the upgrade template");
    manifest(&upgrade, &repo, "2");

    let mut kills = kill_everywhere("install", &install, work);
    kills += kill_everywhere("upgrade", &upgrade, work);
    eprintln!("provision apply kill test: {kills} kills, each finished by the next apply");
}
