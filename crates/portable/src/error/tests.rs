//! Every variant rendered as the CLI renders it (message, then each cause after `: `): no cause
//! text twice, and each names what it is about.

use std::io;
use std::path::PathBuf;

use super::{Error, ImageProblem, chain_text};

fn io_err() -> io::Error {
    io::Error::from(io::ErrorKind::NotFound)
}

fn unit_err() -> realms_unit::Error {
    realms_unit::OsRelease::parse("bad line\n").unwrap_err()
}

/// Each variant with a text its rendering must contain (the thing it is about).
fn every_variant() -> Vec<(Error, &'static str)> {
    let s = |t: &str| t.to_owned();
    let boxed = |e: Error| Box::new(e);
    vec![
        (Error::NoSuchImage(s("img-a")), "img-a"),
        (Error::BadImageType(s("img-b")), "img-b"),
        (Error::BadImageName(s("img-c")), "img-c"),
        (Error::BadPrefix(s("img-d")), "img-d"),
        (Error::NoSuchPath(s("/p/e")), "/p/e"),
        (Error::MatchAll, "unit file match"),
        (Error::BadProfileName(s("prof/x")), "prof/x"),
        (Error::BadCopyMode(s("sideways")), "sideways"),
        (Error::BadBool(s("maybe")), "maybe"),
        (
            Error::NoRelease {
                image: s("img-f"),
                what: "os-release",
            },
            "img-f",
        ),
        (Error::NoOsId(s("img-g")), "img-g"),
        (
            Error::ExtensionMismatch {
                image: s("img-h"),
                reason: realms_unit::Mismatch::Id {
                    id: s("fedora"),
                    host: s("debian"),
                },
            },
            "img-h",
        ),
        (
            Error::IncompatiblePrefixes {
                matches: s("x"),
                image: s("img-i"),
                exts: String::new(),
                valid: s("foo"),
            },
            "img-i",
        ),
        (
            Error::NoUnits {
                image: s("img-j"),
                exts: String::new(),
            },
            "img-j",
        ),
        (Error::UnitExists(s("a.service")), "a.service"),
        (Error::UnitActiveOnAttach(s("b.service")), "b.service"),
        (Error::UnitActive(s("c.service")), "c.service"),
        (
            Error::NotAttached {
                image: s("img-k"),
                exts: String::new(),
            },
            "img-k",
        ),
        (Error::NotDetached(s("img-l")), "img-l"),
        (Error::VendorImage(s("/usr/img-m")), "/usr/img-m"),
        (
            Error::UnitEscapes {
                unit: s("d.service"),
                image: s("img-n"),
                target: s("/etc/x"),
            },
            "d.service",
        ),
        (
            Error::BadRelease {
                path: PathBuf::from("/i/etc/os-release"),
                line: 1,
                source: unit_err(),
            },
            "/i/etc/os-release",
        ),
        (
            Error::image("/i/img-o.raw", ImageProblem::NoRootPartition),
            "/i/img-o.raw",
        ),
        (
            Error::Partition {
                path: PathBuf::from("/i/img-p.raw"),
                source: crate::gpt::GptError::Header("bad header size"),
            },
            "/i/img-p.raw",
        ),
        (Error::io("reading", "/i/q", io_err()), "/i/q"),
        (
            Error::AttachUnit {
                unit: s("f.service"),
                source: boxed(Error::UnitExists(s("f.service"))),
            },
            "f.service",
        ),
        (Error::Bus(io::Error::other("bus closed")), "bus closed"),
        (
            Error::Reload {
                source: boxed(Error::Bus(io::Error::other("no reply"))),
            },
            "reload daemon",
        ),
        (
            Error::Enable {
                verb: "enable",
                unit: s("g.service"),
                source: boxed(Error::Bus(io::Error::other("denied"))),
            },
            "g.service",
        ),
        (
            Error::Queue {
                method: "StartUnit",
                unit: s("h.service"),
                source: boxed(Error::Bus(io::Error::other("denied"))),
            },
            "h.service",
        ),
        (
            Error::NoJob {
                method: "StopUnit",
                unit: s("i.service"),
            },
            "i.service",
        ),
        (
            Error::JobTimeout {
                units: vec![s("j.service")],
            },
            "jobs",
        ),
        (
            Error::JobsFailed {
                units: vec![s("k.service")],
            },
            "k.service",
        ),
        (
            Error::BadJournal {
                path: "/etc/systemd/.realms-portable.journal".into(),
                reason: s("eof"),
            },
            ".realms-portable.journal",
        ),
        (Error::BadLimit(s("1Q")), "1Q"),
        (
            Error::NoQuota(s("/var/lib/portables/foo")),
            "/var/lib/portables/foo",
        ),
        (
            Error::JournalReplay {
                path: "/run/systemd/.realms-portable.journal".into(),
                source: boxed(Error::NoSuchPath(s("/x"))),
            },
            "/run/systemd/.realms-portable.journal",
        ),
        (Error::ProfileInstall { name: s("strict") }, "strict"),
        (Error::Unit(unit_err()), "bad line"),
        (
            Error::Sys(realms_sys::Error::io("opening", "/s/k", io_err())),
            "/s/k",
        ),
        (
            Error::Verity(realms_verity::Error::HashOffset { offset: 7 }),
            "hash offset 7",
        ),
    ]
}

#[test]
fn every_variant_renders_each_cause_once_and_names_its_subject() {
    for (err, subject) in every_variant() {
        let text = chain_text(&err);
        assert!(text.contains(subject), "{text:?} does not name {subject:?}");
        // Each level's own message must not repeat the text of its cause.
        let mut level: &dyn std::error::Error = &err;
        while let Some(cause) = level.source() {
            let (outer, inner) = (level.to_string(), cause.to_string());
            assert!(
                !outer.contains(&inner),
                "{text:?}: the cause {inner:?} prints twice"
            );
            level = cause;
        }
    }
}

#[test]
fn summaries_keep_systemd_and_parser_causes() {
    let e = Error::Partition {
        path: "/i/a.raw".into(),
        source: crate::gpt::GptError::Entries("entry array checksum mismatch"),
    };
    assert_eq!(
        e.summary(),
        "/i/a.raw: the GPT partition entries are damaged: entry array checksum mismatch"
    );
    let e = Error::Enable {
        verb: "disable",
        unit: "a.service".into(),
        source: Box::new(Error::Bus(io::Error::other("Access denied"))),
    };
    assert_eq!(
        e.summary(),
        "Failed to disable the portable service a.service: Access denied"
    );
    let e = Error::BadRelease {
        path: "/i/etc/os-release".into(),
        line: 1,
        source: unit_err(),
    };
    let text = e.summary();
    assert!(text.starts_with("/i/etc/os-release: line 1: "), "{text}");
    assert_eq!(text.matches("'bad line' is not an assignment").count(), 1);
}
