//! Every variant of the realm crate's errors rendered as the CLI renders it.

use super::*;

fn s(text: &str) -> String {
    text.to_string()
}

fn io_err() -> std::io::Error {
    std::io::Error::from_raw_os_error(13)
}

/// Every variant, with the text that names its subject.
fn every_variant() -> Vec<(Error, &'static str)> {
    vec![
        (Error::NoRoot("/tpyo".into()), "/tpyo"),
        (Error::NoSuchRealm(s("a")), "'a'"),
        (Error::RealmExists(s("b")), "'b'"),
        (Error::Running(s("c")), "'c'"),
        (Error::IsDefault(s("d")), "'d'"),
        (
            Error::ImageInUse {
                image: s("base"),
                realms: s("'e'"),
            },
            "'base'",
        ),
        (
            Error::BadConfig {
                path: "/realms/realm-f/config".into(),
                line: Some(3),
                message: s("expected a boolean"),
            },
            "/realms/realm-f/config: line 3",
        ),
        (
            Error::ConfigNotUtf8 {
                path: "/realms/realm-f2/config".into(),
                line: 2,
            },
            "/realms/realm-f2/config: line 2",
        ),
        (
            Error::BadConfigValue {
                path: "/realms/realm-f3/config".into(),
                key: s("port-forward"),
                value: s("x"),
                problem: Box::new(ValueProblem::Forward(crate::value::ForwardProblem::Syntax(
                    s("x"),
                ))),
            },
            "/realms/realm-f3/config: bad value 'x' for key 'port-forward'",
        ),
        (
            Error::BadZoneEntry {
                path: "/realms/zones.toml".into(),
                problem: Box::new(Error::InvalidZoneName {
                    zone: s("Work"),
                    rule: realms_image::ZoneNameProblem::Rule,
                }),
            },
            "/realms/zones.toml: network zone 'Work'",
        ),
        (
            Error::UnknownKey {
                key: s("use-nothing"),
                known: s("use-gpu"),
            },
            "'use-nothing'",
        ),
        (
            Error::BadValue {
                key: s("use-gpu"),
                value: s("maybe"),
                problem: ValueProblem::NotBool,
            },
            "'use-gpu'",
        ),
        (Error::NoDefault, "default realm"),
        (
            Error::StartFailed {
                name: s("g"),
                reason: StartFailure::NotReady { seconds: 30 },
                log: s("last line"),
            },
            "'g'",
        ),
        (Error::NoCommand { name: s("h") }, "'h'"),
        (
            Error::RelativeCwd {
                name: s("h"),
                cwd: "tmp".into(),
            },
            "--cwd tmp",
        ),
        (
            Error::NoCwd {
                name: s("h"),
                cwd: "/nope".into(),
            },
            "/nope",
        ),
        (
            Error::NoSuchUser {
                name: s("h"),
                user: s("user"),
                hint: "; use `realms shell --root`",
            },
            "'user'",
        ),
        (
            Error::NoContainerProcess {
                name: s("h"),
                pid: 42,
            },
            "'h'",
        ),
        (
            Error::RootKindMismatch {
                name: s("h"),
                image: s("img"),
                has: "an overlay",
                needs: "a btrfs snapshot",
            },
            "'img'",
        ),
        (
            Error::OrphanSnapshots {
                name: s("h"),
                dir: "/realms/.snapshots/h".into(),
            },
            "/realms/.snapshots/h",
        ),
        (Error::ConfigNotFlushed { name: s("h") }, "'h'"),
        (Error::ForwardsWithoutNetwork { name: s("h") }, "'h'"),
        (
            Error::NoBindSource {
                name: s("h"),
                path: "/srv/data".into(),
            },
            "/srv/data",
        ),
        (
            Error::Unkillable {
                name: s("h"),
                pids: s("7 (sleep)"),
                cgroup: "/sys/fs/cgroup/x".into(),
            },
            "/sys/fs/cgroup/x",
        ),
        (
            Error::SameNameRunning {
                name: s("h"),
                other: "/other/store".into(),
            },
            "/other/store",
        ),
        (
            Error::NotTreeImage {
                image: s("sealedimg"),
                kind: "sealed",
            },
            "'sealedimg'",
        ),
        (
            Error::PortTaken {
                name: s("h"),
                forward: s("tcp:8080:80"),
                proto: "tcp",
                port: 8080,
                holder: s("other"),
                zone: s("clear"),
            },
            "'other'",
        ),
        (Error::NoLog { name: s("h") }, "'h'"),
        (Error::NotRunning { name: s("i") }, "'i'"),
        (
            Error::MustBeStopped {
                name: s("j"),
                because: s(" and rebase replaces its root"),
            },
            "'j'",
        ),
        (
            Error::SnapshotExists {
                realm: s("k"),
                snapshot: s("s1"),
            },
            "'s1'",
        ),
        (
            Error::NoSuchSnapshot {
                realm: s("l"),
                snapshot: s("s2"),
            },
            "'s2'",
        ),
        (
            Error::RootInUse {
                name: s("m"),
                users: s("PID 7 (bash)"),
            },
            "'m'",
        ),
        (
            Error::UnknownFilesystem {
                image: s("n"),
                filesystem: s("zfs"),
            },
            "'n'",
        ),
        (
            Error::NeedsPrivateKey {
                image: s("o"),
                looked_for: "/keys/o.key".into(),
            },
            "/keys/o.key",
        ),
        (
            Error::CommandNotFound {
                name: s("p"),
                command: s("vim"),
            },
            "vim",
        ),
        (
            Error::NotExecutable {
                name: s("q"),
                command: s("/x"),
                reason: ExecProblem::Os(std::io::Error::other("eacces")),
            },
            "/x",
        ),
        (
            Error::ZoneBusy {
                zone: s("work"),
                realms: s("'a'"),
            },
            "'work'",
        ),
        (
            Error::SubnetOfZone {
                zone: s("work"),
                subnet: s("10.77.1.0/24"),
                other: s("lab"),
            },
            "'lab'",
        ),
        (
            Error::ZoneOwnedElsewhere {
                zone: s("work"),
                bridge: s("vz-work"),
                subnet: s("10.77.1.0/24"),
                owner: "/other/store".into(),
            },
            "/other/store",
        ),
        (
            Error::InvalidSubnet {
                zone: s("work"),
                problem: crate::names::parse_subnet("10.1.2.3/16").unwrap_err(),
            },
            "'10.1.2.3/16'",
        ),
        (
            Error::SubnetInUse {
                zone: s("work"),
                subnet: s("10.77.1.0/24"),
                other: s("lab"),
                whose: s("this store"),
            },
            "'lab'",
        ),
        (
            Error::SubnetOverlaps {
                zone: s("work"),
                subnet: s("10.77.1.0/24"),
                network: std::net::Ipv4Addr::new(10, 77, 1, 0),
                len: 16,
                dev: s("eth0"),
            },
            "eth0",
        ),
        (Error::NoSuchZone { zone: s("work") }, "'work'"),
        (Error::NoFreeAddress { zone: s("work") }, "'work'"),
        (
            Error::NftApply {
                zone: s("work"),
                source: Box::new(realms_sys::Error::io(
                    "running nft",
                    "/usr/sbin/nft",
                    io_err(),
                )),
            },
            "'work'",
        ),
        (
            Error::NftDelete {
                zone: s("work"),
                table: s("realms_work"),
                source: Box::new(realms_sys::Error::io(
                    "running nft",
                    "/usr/sbin/nft",
                    io_err(),
                )),
            },
            "realms_work",
        ),
        (
            Error::InvalidZoneName {
                zone: s("Bad"),
                rule: realms_image::ZoneNameProblem::Rule,
            },
            "'Bad'",
        ),
        (Error::NoFreeSubnet { zone: s("full") }, "'full'"),
        (
            Error::Serialize {
                path: "/realms/zones.toml".into(),
                source: <toml::ser::Error as serde::ser::Error>::custom("bad"),
            },
            "/realms/zones.toml",
        ),
        (
            Error::ZoneInUse {
                zone: s("lab"),
                realms: s("'r'"),
            },
            "'lab'",
        ),
        (
            Error::Image(realms_image::Error::NotFound {
                name: s("img"),
                path: "/storage/appimg/img.appimg".into(),
            }),
            "'img'",
        ),
        (
            Error::Sys(realms_sys::Error::io("opening", "/s/k", io_err())),
            "/s/k",
        ),
    ]
}

#[test]
fn every_variant_renders_each_cause_once_and_names_its_subject() {
    for (err, subject) in every_variant() {
        // What `main` prints: each level of the chain once, as `{:#}` does.
        let mut text = err.to_string();
        let mut level: &dyn std::error::Error = &err;
        while let Some(cause) = level.source() {
            text.push_str(&format!(": {cause}"));
            level = cause;
        }
        assert!(text.contains(subject), "{text:?} does not name {subject:?}");
    }
    for (err, _) in every_variant() {
        let mut level: &dyn std::error::Error = &err;
        while let Some(cause) = level.source() {
            let (outer, inner) = (level.to_string(), cause.to_string());
            assert!(
                !outer.contains(&inner),
                "{outer:?}: the cause {inner:?} prints twice"
            );
            level = cause;
        }
    }
}

/// The variant's name; a match without a wildcard, so a new variant must be named here
/// (and then in [`every_variant`], or the test below fails).
fn variant(err: &Error) -> &'static str {
    match err {
        Error::NoRoot { .. } => "NoRoot",
        Error::NoSuchRealm { .. } => "NoSuchRealm",
        Error::RealmExists { .. } => "RealmExists",
        Error::Running { .. } => "Running",
        Error::IsDefault { .. } => "IsDefault",
        Error::ImageInUse { .. } => "ImageInUse",
        Error::BadConfig { .. } => "BadConfig",
        Error::ConfigNotUtf8 { .. } => "ConfigNotUtf8",
        Error::BadConfigValue { .. } => "BadConfigValue",
        Error::BadZoneEntry { .. } => "BadZoneEntry",
        Error::UnknownKey { .. } => "UnknownKey",
        Error::BadValue { .. } => "BadValue",
        Error::NoDefault => "NoDefault",
        Error::StartFailed { .. } => "StartFailed",
        Error::NoCommand { .. } => "NoCommand",
        Error::RelativeCwd { .. } => "RelativeCwd",
        Error::NoCwd { .. } => "NoCwd",
        Error::NoSuchUser { .. } => "NoSuchUser",
        Error::NoContainerProcess { .. } => "NoContainerProcess",
        Error::RootKindMismatch { .. } => "RootKindMismatch",
        Error::OrphanSnapshots { .. } => "OrphanSnapshots",
        Error::ConfigNotFlushed { .. } => "ConfigNotFlushed",
        Error::ForwardsWithoutNetwork { .. } => "ForwardsWithoutNetwork",
        Error::NoBindSource { .. } => "NoBindSource",
        Error::Unkillable { .. } => "Unkillable",
        Error::SameNameRunning { .. } => "SameNameRunning",
        Error::NotTreeImage { .. } => "NotTreeImage",
        Error::PortTaken { .. } => "PortTaken",
        Error::NoLog { .. } => "NoLog",
        Error::NotRunning { .. } => "NotRunning",
        Error::MustBeStopped { .. } => "MustBeStopped",
        Error::SnapshotExists { .. } => "SnapshotExists",
        Error::NoSuchSnapshot { .. } => "NoSuchSnapshot",
        Error::RootInUse { .. } => "RootInUse",
        Error::UnknownFilesystem { .. } => "UnknownFilesystem",
        Error::NeedsPrivateKey { .. } => "NeedsPrivateKey",
        Error::CommandNotFound { .. } => "CommandNotFound",
        Error::NotExecutable { .. } => "NotExecutable",
        Error::ZoneBusy { .. } => "ZoneBusy",
        Error::SubnetOfZone { .. } => "SubnetOfZone",
        Error::ZoneOwnedElsewhere { .. } => "ZoneOwnedElsewhere",
        Error::InvalidSubnet { .. } => "InvalidSubnet",
        Error::SubnetInUse { .. } => "SubnetInUse",
        Error::SubnetOverlaps { .. } => "SubnetOverlaps",
        Error::NoSuchZone { .. } => "NoSuchZone",
        Error::NoFreeAddress { .. } => "NoFreeAddress",
        Error::NftApply { .. } => "NftApply",
        Error::NftDelete { .. } => "NftDelete",
        Error::InvalidZoneName { .. } => "InvalidZoneName",
        Error::NoFreeSubnet { .. } => "NoFreeSubnet",
        Error::Serialize { .. } => "Serialize",
        Error::ZoneInUse { .. } => "ZoneInUse",
        Error::Image { .. } => "Image",
        Error::Sys { .. } => "Sys",
    }
}

const VARIANTS: &[&str] = &[
    "NoRoot",
    "NoSuchRealm",
    "RealmExists",
    "Running",
    "IsDefault",
    "ImageInUse",
    "BadConfig",
    "ConfigNotUtf8",
    "BadConfigValue",
    "BadZoneEntry",
    "UnknownKey",
    "BadValue",
    "NoDefault",
    "StartFailed",
    "NoCommand",
    "RelativeCwd",
    "NoCwd",
    "NoSuchUser",
    "NoContainerProcess",
    "RootKindMismatch",
    "OrphanSnapshots",
    "ConfigNotFlushed",
    "ForwardsWithoutNetwork",
    "NoBindSource",
    "Unkillable",
    "SameNameRunning",
    "NotTreeImage",
    "PortTaken",
    "NoLog",
    "NotRunning",
    "MustBeStopped",
    "SnapshotExists",
    "NoSuchSnapshot",
    "RootInUse",
    "UnknownFilesystem",
    "NeedsPrivateKey",
    "CommandNotFound",
    "NotExecutable",
    "ZoneBusy",
    "SubnetOfZone",
    "ZoneOwnedElsewhere",
    "InvalidSubnet",
    "SubnetInUse",
    "SubnetOverlaps",
    "NoSuchZone",
    "NoFreeAddress",
    "NftApply",
    "NftDelete",
    "InvalidZoneName",
    "NoFreeSubnet",
    "Serialize",
    "ZoneInUse",
    "Image",
    "Sys",
];

#[test]
fn every_variant_is_in_the_rendering_test() {
    let listed: std::collections::BTreeSet<&str> =
        every_variant().iter().map(|(e, _)| variant(e)).collect();
    let missing: Vec<&&str> = VARIANTS.iter().filter(|v| !listed.contains(**v)).collect();
    assert!(missing.is_empty(), "not rendered by the test: {missing:?}");
}
