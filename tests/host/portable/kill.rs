//! `realms portable attach`, `detach` and `reattach` killed with SIGKILL at every failpoint they
//! pass: the attach directories hold exactly the old or the new state (apart from the journal,
//! which makes it the new one), the next command succeeds, and it leaves exactly the state a
//! clean run leaves.

use std::fs;
use std::process::Command;

use realms_tests::failpoints_portable::{journal_files, kill_at, passes, run_ok, snapshot, trace};
use realms_tests::fixtures::portable_image;
use realms_tests::run::run;
use realms_tests::scratch::Scratch;

/// A root with foo-test_1 and foo-test_2 (one unit changed, one added) in /var/lib/portables,
/// systemd's profiles, and `setup` run on it.
fn root(label: &str, setup: &[&[&str]]) -> Scratch {
    let dir = Scratch::empty(label);
    let r = dir.path();
    let portables = r.join("var/lib/portables");
    fs::create_dir_all(&portables).unwrap();
    fs::create_dir_all(r.join("etc")).unwrap();
    fs::write(r.join("etc/os-release"), "ID=debian\n").unwrap();
    for v in ["foo-test_1", "foo-test_2"] {
        run(Command::new("cp")
            .arg("-a")
            .arg(portable_image())
            .arg(portables.join(v)));
    }
    let units = portables.join("foo-test_2/usr/lib/systemd/system");
    fs::write(
        units.join("foo-test.service"),
        "[Service]\nExecStart=/usr/bin/busybox true\n",
    )
    .unwrap();
    fs::write(
        units.join("foo-test-extra.service"),
        "[Service]\nExecStart=/usr/bin/busybox true\n",
    )
    .unwrap();
    super::install_profiles(r);
    for args in setup {
        run_ok(r, args);
    }
    dir
}

struct Case {
    label: &'static str,
    setup: &'static [&'static [&'static str]],
    command: &'static [&'static str],
    /// Undoes `command` (run when the killed command took effect).
    inverse: &'static [&'static str],
}

const ATTACH: &[&str] = &["attach", "foo-test_1"];

/// Kills `case.command` at every failpoint pass; returns the number of kills.
fn kill_everywhere(case: &Case) -> usize {
    // The reference: old state, new state, and the state after the inverse, from clean runs.
    let clean = root(&format!("{}-ref", case.label), case.setup);
    let old = snapshot(clean.path());
    let (out, points) = trace(clean.path(), case.command);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let new = snapshot(clean.path());
    assert_ne!(old, new, "{} changes nothing", case.label);
    run_ok(clean.path(), case.inverse);
    let undone = snapshot(clean.path());
    let passes = passes(&points);
    assert!(
        passes.len() >= 4,
        "{}: too few failpoints passed: {points:?}",
        case.label
    );
    for (name, nth) in &passes {
        let at = format!("{} killed at {name} (pass {nth})", case.label);
        let r = root(&format!("{}-{name}-{nth}", case.label), case.setup);
        kill_at(r.path(), case.command, name, *nth);
        let state = snapshot(r.path());
        let journal = journal_files(r.path());
        let committed = journal.iter().any(|j| !j.contains(".#"));
        if !committed {
            assert!(
                state == old || state == new,
                "{at}: a partial state without a journal:\n{}",
                diff(&old, &new, &state)
            );
        }
        if committed || state == new {
            // It took effect: the inverse must succeed and leave what a clean inverse leaves.
            run_ok(r.path(), case.inverse);
            assert_eq!(snapshot(r.path()), undone, "{at}: then the inverse");
        } else {
            run_ok(r.path(), case.command);
            assert_eq!(snapshot(r.path()), new, "{at}: then the command again");
        }
        assert_eq!(
            journal_files(r.path()),
            Vec::<String>::new(),
            "{at}: journal left"
        );
    }
    passes.len()
}

fn diff(old: &[String], new: &[String], got: &[String]) -> String {
    let show = |l: &String| {
        let o = if old.contains(l) { "o" } else { " " };
        let n = if new.contains(l) { "n" } else { " " };
        format!("{o}{n} {l}")
    };
    got.iter().map(show).collect::<Vec<_>>().join("\n")
}

#[test]
fn attach_detach_reattach_killed_at_every_failpoint_leave_old_or_new_state() {
    let cases = [
        Case {
            label: "pk-attach",
            setup: &[],
            command: ATTACH,
            inverse: &["detach", "foo-test_1"],
        },
        Case {
            label: "pk-attach-symlink",
            setup: &[],
            command: &["attach", "--copy=symlink", "--runtime", "foo-test_1"],
            inverse: &["detach", "--runtime", "foo-test_1"],
        },
        Case {
            label: "pk-attach-mixed",
            setup: &[],
            command: &["attach", "--copy=mixed", "foo-test_1"],
            inverse: &["detach", "foo-test_1"],
        },
        Case {
            label: "pk-detach",
            setup: &[ATTACH],
            command: &["detach", "foo-test_1"],
            inverse: ATTACH,
        },
        Case {
            label: "pk-reattach",
            setup: &[ATTACH],
            command: &["reattach", "foo-test_2"],
            inverse: &["reattach", "foo-test_1"],
        },
    ];
    let mut kills = 0;
    for case in &cases {
        let n = kill_everywhere(case);
        eprintln!("{}: {n} kills", case.label);
        kills += n;
    }
    eprintln!("portable kill test: {kills} kills, every one old or new state");
}
