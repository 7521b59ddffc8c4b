//! `update`, `rollback` and `vacuum` on temporary roots (no systemd: the reattach writes the
//! attach files, the health check has no units to watch): the stream's newest is taken, bad
//! versions are skipped until a newer one appears, N versions are kept, downgrades need
//! `allow_downgrade`.

use crate::fetch::Fetcher;
use crate::index;
use crate::manifest::Stream;
use crate::publish::{Publish, publish};
use crate::state::State;
use crate::tests::Repo;
use crate::update::{Options, Outcome, rollback, update, vacuum};

fn run(r: &Repo, m: &crate::manifest::Manifest, dry_run: bool) -> Vec<(Outcome, Option<String>)> {
    let opts = Options {
        dry_run,
        ..Options::default()
    };
    update(&r.root, m, &Fetcher::default(), &opts, &mut |_| {})
        .unwrap()
        .into_iter()
        .map(|r| (r.outcome, r.to))
        .collect()
}

fn installed(r: &Repo) -> String {
    State::load(&r.root).unwrap().packages["web"]
        .version
        .clone()
}

fn attached_from(r: &Repo) -> String {
    let conf = r
        .root
        .join("etc/systemd/system.attached/web.service.d/20-portable.conf");
    std::fs::read_to_string(conf).unwrap()
}

#[test]
fn update_follows_the_stream_skips_bad_versions_and_keeps_two() {
    let r = Repo::new();
    r.publish(&[r.package("web", "1")], None, 86400);
    let m = r.manifest("    - name: web\n      version: latest\n");
    r.apply(&m, false).unwrap();
    assert_eq!(run(&r, &m, false), [(Outcome::Current, Some("1".into()))]);

    r.publish(&[r.package("web", "2")], None, 86400);
    assert_eq!(
        run(&r, &m, true),
        [(Outcome::WouldUpdate, Some("2".into()))]
    );
    assert_eq!(installed(&r), "1", "a dry run changed something");
    assert_eq!(run(&r, &m, false), [(Outcome::Updated, Some("2".into()))]);
    assert_eq!(installed(&r), "2");
    assert!(attached_from(&r).contains("web_2"), "{}", attached_from(&r));
    assert_eq!(r.portables(), ["web_1", "web_2"]);
    let s = State::load(&r.root).unwrap();
    let h = &s.history["web"];
    assert_eq!((h.good.as_deref(), h.trial.is_none()), (Some("2"), true));
    assert_eq!(h.kept[0].version, "1");

    // 3 is marked bad (as a failed health check does): update does not take it, apply's
    // `latest` neither.
    r.publish(&[r.package("web", "3")], None, 86400);
    let mut s = State::load(&r.root).unwrap();
    s.history.get_mut("web").unwrap().mark_bad("3");
    s.save(&r.root).unwrap();
    assert_eq!(run(&r, &m, false), [(Outcome::Bad, Some("3".into()))]);
    let steps = r.apply(&m, false).unwrap();
    assert_eq!(steps[0].action, crate::apply::Action::Unchanged);
    assert_eq!(installed(&r), "2");

    // 4 comes: taken, and only two versions stay.
    r.publish(&[r.package("web", "4")], None, 86400);
    assert_eq!(run(&r, &m, false), [(Outcome::Updated, Some("4".into()))]);
    assert_eq!(r.portables(), ["web_2", "web_4"]);

    // By hand: back to 2, 4 marked bad, the next update stays at 2.
    let back = rollback(&r.root, "web", &mut |_| {}).unwrap();
    assert_eq!(
        (back.outcome, back.to.as_deref()),
        (Outcome::ManualRollback, Some("2"))
    );
    assert_eq!(installed(&r), "2");
    assert!(attached_from(&r).contains("web_2"));
    assert_eq!(run(&r, &m, false), [(Outcome::Bad, Some("4".into()))]);
    let e = rollback(&r.root, "web", &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(e.contains("no earlier version"), "{e}");
    let e = rollback(&r.root, "nope", &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(e.contains("not installed"), "{e}");

    // Vacuum with one kept: 4 (bad, not in use) goes.
    let gone = vacuum(&r.root, 1).unwrap();
    assert_eq!(gone, [("web".to_string(), "4".to_string())]);
    assert_eq!(r.portables(), ["web_2"]);
}

#[test]
fn switching_streams_moves_to_its_newest_and_downgrades_only_when_allowed() {
    let r = Repo::new();
    r.publish(&[r.package("web", "2")], None, 86400);
    publish(
        &Publish {
            repo: r.repo.to_str().unwrap(),
            arch: index::host_arch(),
            stream: Stream::Next,
            valid_for: 86400,
            serial: None,
        },
        &[r.package("web", "3~rc1")],
        &r.key,
    )
    .unwrap();
    let m = r.manifest("    - name: web\n");
    r.apply(&m, false).unwrap();
    assert_eq!(installed(&r), "2");
    // next's newest (3~rc1) is newer than 2: taken.
    let next = r.manifest("    - name: web\n      track_stream: next\n");
    assert_eq!(
        run(&r, &next, false),
        [(Outcome::Updated, Some("3~rc1".into()))]
    );
    assert_eq!(
        State::load(&r.root).unwrap().packages["web"].stream,
        Stream::Next
    );
    // Back to stable: 2 is lower than 3~rc1, refused without allow_downgrade.
    assert_eq!(
        run(&r, &m, false),
        [(Outcome::DowngradeRefused, Some("2".into()))]
    );
    let down = r.manifest("    - name: web\n      allow_downgrade: true\n");
    assert_eq!(
        run(&r, &down, false),
        [(Outcome::Updated, Some("2".into()))]
    );
    assert_eq!(installed(&r), "2");
    // A pinned version is apply's.
    let pinned = r.manifest("    - name: web\n      version: '2'\n");
    assert_eq!(run(&r, &pinned, false)[0].0, Outcome::Pinned);
}

#[test]
fn periodic_updates_wait_for_their_window() {
    let r = Repo::new();
    r.publish(&[r.package("web", "1")], None, 86400);
    let now = index::now() as i64;
    let (today, minute) = (now.div_euclid(86_400), now.rem_euclid(86_400) / 60);
    let day = |d: i64| format!("{:?}", crate::window::Day::of(d));
    // A one-minute window three days from now: closed.
    let hhmm = |m: i64| format!("{:02}:{:02}", m.rem_euclid(1440) / 60, m.rem_euclid(60));
    let closed = format!(
        "  updates:\n    strategy: periodic\n    windows:\n      - {{days: [{}], start_time: '{}', length_minutes: 1}}\n",
        day(today + 3),
        hhmm(minute)
    );
    let body = "    - name: web\n";
    let m = r.manifest(&format!("{body}{closed}"));
    r.apply(&m, false).unwrap();
    r.publish(&[r.package("web", "2")], None, 86400);
    let reports = update(
        &r.root,
        &m,
        &Fetcher::default(),
        &Options::default(),
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(reports[0].outcome, Outcome::Waiting);
    assert!(
        reports[0].message.contains("the next opens"),
        "{}",
        reports[0].message
    );
    assert_eq!(installed(&r), "1");
    // A window open now (started up to a minute ago, 10 minutes long).
    let open = format!(
        "  updates:\n    strategy: periodic\n    windows:\n      - {{days: [{}], start_time: '{}', length_minutes: 10}}\n",
        day(if minute == 0 { today - 1 } else { today }),
        hhmm(minute - 1)
    );
    let m = r.manifest(&format!("{body}{open}"));
    assert_eq!(run(&r, &m, false), [(Outcome::Updated, Some("2".into()))]);
}

#[test]
fn a_fleet_lock_slot_is_waited_for_taken_and_given_back() {
    let r = Repo::new();
    r.publish(&[r.package("web", "1")], None, 86400);
    let locks = r._dir.path().join("locks");
    std::fs::create_dir_all(r.root.join("etc")).unwrap();
    std::fs::write(r.root.join("etc/machine-id"), "me\n").unwrap();
    let m = r.manifest(&format!(
        "    - name: web\n  updates:\n    strategy: fleet_lock\n    fleet_lock: {{base_url: 'file://{}', group: web}}\n",
        locks.display()
    ));
    r.apply(&m, false).unwrap();
    r.publish(&[r.package("web", "2")], None, 86400);
    // Another machine holds the only slot.
    std::fs::create_dir_all(locks.join("web")).unwrap();
    std::fs::write(locks.join("web/slot-0"), "other\n").unwrap();
    let reports = update(
        &r.root,
        &m,
        &Fetcher::default(),
        &Options::default(),
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(reports[0].outcome, Outcome::Waiting);
    assert!(
        reports[0].message.contains("is taken"),
        "{}",
        reports[0].message
    );
    assert_eq!(installed(&r), "1");
    // Given back: this machine takes it, updates, and gives it back.
    std::fs::remove_file(locks.join("web/slot-0")).unwrap();
    assert_eq!(run(&r, &m, false), [(Outcome::Updated, Some("2".into()))]);
    assert!(
        !locks.join("web/slot-0").exists(),
        "the slot was not given back"
    );
    // Nothing to update: the lock is not touched.
    std::fs::write(locks.join("web/slot-0"), "other\n").unwrap();
    assert_eq!(run(&r, &m, false), [(Outcome::Current, Some("2".into()))]);
}

/// Regression (found when the export and update branches met): update and rollback reattached
/// the image but left the exported commands pointing at the old one, which vacuum then removes.
#[test]
fn exported_commands_follow_update_and_rollback() {
    let r = Repo::new();
    r.publish(&[r.package("web", "1")], None, 86400);
    let m = r.manifest("    - name: web\n      version: latest\n      export: [tool]\n");
    r.apply(&m, false).unwrap();
    let cmd = r.root.join(crate::export::BIN_DIR).join("tool");
    let points_at = |v: &str| {
        let text = std::fs::read_to_string(&cmd).unwrap();
        text.contains(&format!("RootDirectory=/var/lib/portables/web_{v}'"))
    };
    assert!(points_at("1"));
    r.publish(&[r.package("web", "2")], None, 86400);
    assert_eq!(run(&r, &m, false), [(Outcome::Updated, Some("2".into()))]);
    assert!(points_at("2"), "{}", std::fs::read_to_string(&cmd).unwrap());
    rollback(&r.root, "web", &mut |_| {}).unwrap();
    assert!(points_at("1"), "{}", std::fs::read_to_string(&cmd).unwrap());
}
