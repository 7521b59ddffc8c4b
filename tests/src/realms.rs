//! A realm store of one test: its own `--root` (on the btrfs pool, or on a plain filesystem),
//! the Debian base as its `base` image, unique realm and zone names (veth and bridge names are
//! global on the host), and everything stopped and removed on drop.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::fixtures::{debian_base, fixtures_dir};
use crate::run::{output, run, tail};
use crate::scratch::{Scratch, unique, unmount_below};

/// One test's realm store.
#[derive(Debug)]
pub struct TestRoot {
    root: PathBuf,
    zone: String,
    _scratch: Option<Scratch>,
}

impl TestRoot {
    /// A root on the btrfs pool with the base image as a read-only subvolume (so realms are
    /// snapshots).
    pub fn btrfs() -> TestRoot {
        let scratch = Scratch::empty("root");
        let root = scratch.path().to_path_buf();
        let images = root.join("storage/appimg");
        fs::create_dir_all(&images).unwrap();
        run(Command::new("btrfs")
            .args(["subvolume", "snapshot", "-r"])
            .arg(debian_base())
            .arg(images.join("base.appimg")));
        let t = TestRoot {
            root,
            zone: name("z"),
            _scratch: Some(scratch),
        };
        t.own_zone();
        t
    }

    /// An empty root on the btrfs pool: no image, no realm, the template config as Realms
    /// makes it (for tests that run the user's own sequence, import included).
    pub fn empty() -> TestRoot {
        let scratch = Scratch::empty("root");
        TestRoot {
            root: scratch.path().to_path_buf(),
            _scratch: Some(scratch),
            zone: String::new(),
        }
    }

    /// A root on a filesystem that is not btrfs (the machine's own disk, under target/), with
    /// the base image imported as a directory (so realms are overlays).
    pub fn plain() -> TestRoot {
        let root = fixtures_dir().join("plain").join(unique("root"));
        fs::create_dir_all(&root).unwrap();
        let t = TestRoot {
            root,
            zone: name("z"),
            _scratch: None,
        };
        t.ok(&["appimg", "import", "base", &debian_base().to_string_lossy()]);
        t.own_zone();
        t
    }

    /// Creates the store and gives its new realms a zone of their own: bridges are global, and
    /// parallel tests must not share (or delete) each other's.
    fn own_zone(&self) {
        self.ok(&["init"]);
        let template = self.realms_dir().join("config");
        let text = fs::read_to_string(&template).unwrap();
        let zone = &self.zone;
        fs::write(
            &template,
            text.replace(
                "network-zone = \"clear\"",
                &format!("network-zone = \"{zone}\""),
            ),
        )
        .unwrap();
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    /// The zone the store's new realms are in (unique to this test).
    pub fn zone(&self) -> &str {
        &self.zone
    }

    /// `realms --root ROOT ARGS...`, whatever its exit status.
    pub fn realms(&self, args: &[&str]) -> Output {
        output(&mut self.command(args))
    }

    /// The command line, to add stdin or environment.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(crate::realms_bin());
        cmd.arg("--root").arg(&self.root).args(args);
        cmd
    }

    /// `realms ARGS...`, which must succeed; returns stdout.
    #[track_caller]
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.realms(args);
        assert!(
            out.status.success(),
            "`realms {}` failed ({}):\nstdout:\n{}\nstderr:\n{}",
            args.join(" "),
            out.status,
            tail(&out.stdout),
            tail(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `realms ARGS...`, which must succeed; returns what it said on stderr (its `[+]` lines).
    #[track_caller]
    pub fn said(&self, args: &[&str]) -> String {
        let out = self.realms(args);
        assert!(
            out.status.success(),
            "`realms {}` failed ({}):\nstderr:\n{}",
            args.join(" "),
            out.status,
            tail(&out.stderr)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// `realms ARGS...`, which must fail; returns stderr.
    #[track_caller]
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.realms(args);
        assert!(
            !out.status.success(),
            "`realms {}` succeeded but should have failed",
            args.join(" ")
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// The real directory of `/realms`.
    pub fn realms_dir(&self) -> PathBuf {
        self.root.join("storage/realms")
    }

    fn running(&self) -> Vec<String> {
        let out = self.realms(&["list", "--json"]);
        let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        list.as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["running"] == true)
            .filter_map(|r| r["name"].as_str().map(str::to_string))
            .collect()
    }
}

impl Drop for TestRoot {
    fn drop(&mut self) {
        for name in self.running() {
            let _ = self.realms(&["stop", &name]);
        }
        let zones = fs::read_to_string(self.realms_dir().join("zones.toml")).unwrap_or_default();
        for zone in zones
            .lines()
            .filter_map(|l| l.strip_prefix('[')?.strip_suffix(']'))
        {
            forget_zone(&self.root, zone);
        }
        if self._scratch.is_none() {
            unmount_below(&self.root);
            let _ = fs::remove_dir_all(&self.root);
        }
    }
}

/// Removes what zone `zone` of the store under `root` left on the host: its bridge, its
/// nftables table and its host-wide record (`/run/realms/net/ZONE.toml`), unless that record
/// says another store owns the zone. (`realms zone remove` refuses while realms are configured
/// for the zone, and a test's realms stay configured to the end.)
pub fn forget_zone(root: &Path, zone: &str) {
    let record = Path::new("/run/realms/net").join(format!("{zone}.toml"));
    let owner = fs::read_to_string(&record).unwrap_or_default();
    let store = root
        .join("storage/realms")
        .canonicalize()
        .unwrap_or_else(|_| root.join("storage/realms"));
    if !owner.is_empty() && !owner.contains(&format!("\"{}\"", store.display())) {
        return;
    }
    let _ = Command::new("ip")
        .args(["link", "del", &format!("vz-{zone}")])
        .output();
    let _ = Command::new("nft")
        .args(["delete", "table", "inet", &format!("realms-zone-{zone}")])
        .output();
    let _ = fs::remove_file(record);
}

/// A realm or zone name no other test uses (veth and bridge names are global on the host):
/// `TAG` followed by a short unique suffix (up to 6 characters), 12 characters at most, so a
/// `TAG` has at most 6. (Regression: `xrevoke` passed while the PID was small and failed in CI.)
pub fn name(tag: &str) -> String {
    assert!(
        tag.len() <= 6,
        "a test name's tag has at most 6 characters: {tag}"
    );
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let s = format!("{tag}{:x}{n:x}", std::process::id() % 0x10000);
    assert!(s.len() <= 12, "test names must stay short: {s}");
    s
}
