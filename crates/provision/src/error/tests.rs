//! Every error and reason rendered as the CLI prints it.

use super::*;

fn s(text: &str) -> String {
    text.to_string()
}

fn io_err() -> std::io::Error {
    std::io::Error::from_raw_os_error(13)
}

/// Every variant, with the text that names its subject.
fn every_variant() -> Vec<(Error, &'static str)> {
    let json = serde_json::from_str::<u8>("x").unwrap_err();
    vec![
        (
            Error::Manifest {
                file: "/etc/realms/m.yaml".into(),
                line: 3,
                column: 1,
                message: s("bad"),
            },
            "/etc/realms/m.yaml:3:1",
        ),
        (
            Error::ManifestValue {
                file: "/m.yaml".into(),
                package: s("nginx"),
                reason: ManifestProblem::HealthSettle,
            },
            "'nginx'",
        ),
        (
            Error::BadIndex {
                url: s("file:///r/index"),
                reason: IndexProblem::TooLarge { limit: 1 },
            },
            "file:///r/index",
        ),
        (Error::Unsigned { url: s("u1") }, "u1"),
        (
            Error::BadSignature {
                url: s("u2"),
                reason: IndexSignatureProblem::Untrusted(s("ab12")),
            },
            "u2",
        ),
        (
            Error::OlderIndex {
                url: s("u3"),
                serial: 1,
                seen: 2,
            },
            "u3",
        ),
        (
            Error::Expired {
                url: s("u4"),
                expires: 1,
                now: 2,
            },
            "u4",
        ),
        (
            Error::NotListed {
                package: s("p1"),
                version: s("1"),
                url: s("u5"),
                stream: s("stable"),
                listed: s("2"),
            },
            "p1",
        ),
        (
            Error::Integrity {
                file: s("p_1.tar"),
                url: s("u6"),
                reason: IntegrityProblem::Larger { listed_size: 10 },
            },
            "p_1.tar",
        ),
        (
            Error::Hostile {
                file: s("p_2.tar"),
                entry: s("../x"),
                reason: realms_image::Hostility::ParentDir,
            },
            "'../x'",
        ),
        (
            Error::Fetch {
                url: s("u7"),
                reason: FetchProblem::Vanished,
            },
            "u7",
        ),
        (
            Error::CaFile {
                path: "/etc/ca.pem".into(),
                reason: CaProblem::Empty,
            },
            "/etc/ca.pem",
        ),
        (Error::Scheme { url: s("ftp://x") }, "ftp://x"),
        (
            Error::Key {
                key: s("builder"),
                source: Box::new(realms_image::Error::NoSuchKey {
                    name: s("builder"),
                    path: "/k/builder.key".into(),
                }),
            },
            "builder",
        ),
        (
            Error::Portable {
                package: s("web"),
                source: Box::new(realms_portable::Error::NoSuchImage(s("web"))),
            },
            "'web'",
        ),
        (
            Error::State {
                path: "/var/lib/realms/state.json".into(),
                message: s("bad"),
            },
            "/var/lib/realms/state.json",
        ),
        (
            Error::PackageName {
                path: "/x/pkg.zip".into(),
            },
            "/x/pkg.zip",
        ),
        (
            Error::NotAPackage {
                path: "/x/p_1.tar".into(),
                source: io_err(),
            },
            "/x/p_1.tar",
        ),
        (
            Error::PackageChanged {
                path: "/r/p_1.tar".into(),
            },
            "/r/p_1.tar",
        ),
        (
            Error::SerializeIndex {
                path: "/r/index.stable.json".into(),
                source: json,
            },
            "/r/index.stable.json",
        ),
        (Error::PackRaw, "raw images"),
        (
            Error::IndexExhausted {
                index: s("/r/amd64/index.stable.json"),
                what: "serial",
            },
            "/r/amd64/index.stable.json",
        ),
        (
            Error::Inbox {
                archive: "/opt/inbox/a.zip".into(),
                problem: InboxProblem::Name,
            },
            "/opt/inbox/a.zip",
        ),
        (
            Error::Inbox {
                archive: "/opt/inbox/b.tar".into(),
                problem: InboxProblem::NoUser(s("alice")),
            },
            "'alice'",
        ),
        (
            Error::OciReference {
                url: s("oci://h/R"),
                reason: OciReferenceProblem::NoRepository,
            },
            "oci://h/R",
        ),
        (
            Error::RegistryAuth {
                registry: s("reg.example:5000"),
                repository: s("fleet"),
                reason: AuthProblem::Scheme(s("ntlm")),
            },
            "reg.example:5000",
        ),
        (
            Error::Push {
                url: s("https://reg/v2/x"),
                reason: PushProblem::NoUploadLocation,
            },
            "https://reg/v2/x",
        ),
        (Error::DownloadThread, "download thread"),
        (
            Error::NothingToRollBack {
                package: s("web"),
                reason: NoRollback::NoEarlier {
                    kept: vec![s("1.0"), s("0.9")],
                },
            },
            "'web'",
        ),
        (Error::io("reading", "/r/x", io_err()), "/r/x"),
        (
            Error::Sys(realms_sys::Error::io("opening", "/s/k", io_err())),
            "/s/k",
        ),
        (
            Error::NoKeys {
                dir: "/r/etc/realms/keys.d".into(),
            },
            "/r/etc/realms/keys.d",
        ),
        (
            Error::Render {
                format: "Butane YAML",
                message: s("bad"),
            },
            "Butane YAML",
        ),
        (
            Error::ExportTaken {
                path: "/usr/local/bin/goss".into(),
                package: s("goss"),
                name: s("goss"),
                owner: Some(s("other")),
            },
            "/usr/local/bin/goss",
        ),
        (
            Error::ExportMissing {
                package: s("goss"),
                name: s("goss-cli"),
                image: "/var/lib/portables/goss_1".into(),
            },
            "goss-cli",
        ),
    ]
}

#[test]
fn every_variant_renders_each_cause_once_and_names_its_subject() {
    for (err, subject) in every_variant() {
        // What the CLI prints (`{:#}`) and the inbox writes to `.error`.
        let text = chain_text(&err);
        assert!(text.contains(subject), "{text:?} does not name {subject:?}");
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

/// Regression: `Key`, `Portable` and `Io` put their cause in their own message and gave it
/// as their source, so `{:#}` printed it twice.
#[test]
fn key_portable_and_io_errors_print_their_cause_once() {
    let err = Error::io("reading", "/r/x", io_err());
    let text = chain_text(&err);
    assert_eq!(text.matches("ermission denied").count(), 1, "{text}");
    let err = Error::Portable {
        package: s("web"),
        source: Box::new(realms_portable::Error::NoSuchImage(s("web"))),
    };
    assert_eq!(chain_text(&err), "package 'web': No image 'web' found.",);
}

/// Each reason a package, CA file, download or push fails reads as it did when it was free text
/// (the host tests and the docs quote these words).
#[test]
fn typed_reasons_read_as_the_free_text_did() {
    let cases: Vec<(Box<dyn std::error::Error>, &str)> = vec![
        (
            Box::new(IntegrityProblem::Sha256 {
                sha256: s("ab"),
                size: 3,
                listed_sha256: s("cd"),
                listed_size: 4,
            }),
            "its SHA-256 is ab and size 3, but the index states cd and 4",
        ),
        (
            Box::new(IntegrityProblem::Larger { listed_size: 4 }),
            "larger than the 4 bytes the index states",
        ),
        (
            Box::new(IntegrityProblem::Digest {
                digest: s("sha256:ab"),
                size: 3,
            }),
            "its digest is sha256:ab and size 3",
        ),
        (
            Box::new(IntegrityProblem::Decompress(std::io::Error::other(
                "bad magic",
            ))),
            "cannot decompress: bad magic",
        ),
        (
            Box::new(IntegrityProblem::Tar {
                entry: Some(s("a/b")),
                reason: s("bad header"),
            }),
            "not a valid tar archive: entry a/b: bad header",
        ),
        (
            Box::new(IntegrityProblem::Tar {
                entry: None,
                reason: s("bad header"),
            }),
            "not a valid tar archive: bad header",
        ),
        (
            Box::new(IntegrityProblem::Unpacker(Box::new(
                realms_image::Error::NotFound {
                    name: s("x"),
                    path: "/a".into(),
                },
            ))),
            "application image 'x' not found at /a; `realms appimg list` shows the images there are",
        ),
        (Box::new(CaProblem::Pem(s("bad base64"))), "bad base64"),
        (
            Box::new(FetchProblem::Failed {
                cause: Transfer::ServerError(503),
                attempts: 1,
            }),
            "server error 503 (after 1 attempt)",
        ),
        (
            Box::new(FetchProblem::Failed {
                cause: Transfer::Status(418),
                attempts: 3,
            }),
            "the server answered 418 (after 3 attempts)",
        ),
        (
            Box::new(FetchProblem::Request(Transfer::Client(s("timed out")))),
            "timed out",
        ),
        (
            Box::new(FetchProblem::Cut(std::io::Error::other("reset"))),
            "reset; the next try resumes where this one stopped",
        ),
        (
            Box::new(FetchProblem::TooLarge { limit: 9 }),
            "larger than 9 bytes",
        ),
        (
            Box::new(FetchProblem::Vanished),
            "not found on the server, though the index lists it",
        ),
        (
            Box::new(FetchProblem::NoIndex {
                arch: s("x86-64"),
                stream: s("stable"),
                to: None,
            }),
            "no index for architecture x86-64 and stream stable; publish one with `realms provision publish --stream stable`",
        ),
        (
            Box::new(FetchProblem::NoIndex {
                arch: s("x86-64"),
                stream: s("stable"),
                to: Some(s("oci://reg/x")),
            }),
            "no index for architecture x86-64 and stream stable; publish one with `realms provision publish --to oci://reg/x --stream stable`",
        ),
        (
            Box::new(FetchProblem::NotARegistry { answer: s("404") }),
            "not an OCI registry: /v2/ answered 404",
        ),
        (
            Box::new(FetchProblem::Registry { answer: s("500") }),
            "the registry answered 500",
        ),
        (
            Box::new(PushProblem::Registry { answer: s("400") }),
            "the registry answered 400",
        ),
        (
            Box::new(PushProblem::NoUploadLocation),
            "the registry gave no upload location",
        ),
        (Box::new(PushProblem::Digest(s("bad"))), "not a digest: bad"),
        (
            Box::new(AuthProblem::CredentialsFile {
                file: "/root/.docker/config.json".into(),
                problem: CredentialsProblem::NoColon,
            }),
            "credentials file /root/.docker/config.json: auth is not base64 of USER:PASSWORD",
        ),
        (
            Box::new(AuthProblem::NoToken {
                realm: s("https://t/token"),
                json: None,
            }),
            "its token service https://t/token answered no token",
        ),
        (
            Box::new(AuthProblem::TokenRefused {
                realm: s("https://t/token"),
                whose: s("no credentials"),
                answer: s("401"),
            }),
            "its token service https://t/token refused a token (no credentials): 401",
        ),
        (
            Box::new(AuthProblem::Denied {
                what: s("reading u"),
                answer: s("403"),
            }),
            "reading u: denied, 403",
        ),
        (
            Box::new(ManifestProblem::Unit {
                key: "start",
                unit: s("x.service"),
            }),
            "key start: 'x.service' is not a unit of this package: unit names start with the package name and end in .service, .socket, .timer, .path or .target",
        ),
        (
            Box::new(ManifestProblem::NoProfile(s("p"))),
            "key profile: no profile 'p' (no p/service.conf where systemd keeps profiles): its exported commands would run without a sandbox",
        ),
        (
            Box::new(ManifestProblem::ExportedTwice {
                command: s("c"),
                other: s("o"),
            }),
            "key export: 'c' is exported by package 'o' too; a command has one package",
        ),
        (
            Box::new(ManifestProblem::Window(
                crate::window::WindowProblem::Length(0),
            )),
            "key updates.windows: length_minutes 0 is not between 1 and 1440",
        ),
        (
            Box::new(ManifestProblem::NoFleetLock),
            "key updates: strategy fleet_lock needs fleet_lock: {base_url: ..., group: ...}",
        ),
        (
            Box::new(IndexProblem::Format {
                format: s("v9"),
                expected: "v1",
            }),
            "format 'v9' is not 'v1'; a newer realms may read it",
        ),
        (
            Box::new(IndexProblem::Entry {
                package: s("web"),
                version: s("1"),
                file: s("f"),
                sha256: s("h"),
            }),
            "package 'web' version '1': file 'f' or hash 'h' is not valid",
        ),
        (
            Box::new(IndexProblem::FileName {
                file: s("f"),
                package: s("web"),
                version: s("1"),
            }),
            "file 'f' is not named web_1.EXT",
        ),
        (
            Box::new(IndexProblem::LayerTooLarge { size: 9, limit: 8 }),
            "a layer of 9 bytes, more than 8",
        ),
        (
            Box::new(IndexProblem::Layers {
                count: 2,
                media: s("m"),
            }),
            "2 layers of type m, not one",
        ),
        (
            Box::new(IndexProblem::Digest {
                digest: s("sha256:a"),
            }),
            "the manifest's digest is not sha256:a",
        ),
        (
            Box::new(IndexProblem::ArtifactType {
                found: None,
                expected: "t",
            }),
            "artifactType (none), not t: not a realms index",
        ),
        (Box::new(CaProblem::Empty), "no PEM certificate in it"),
    ];
    for (reason, text) in cases {
        assert_eq!(reason.to_string(), text);
        assert!(reason.source().is_none(), "{reason}: inline, not a source");
    }
}

/// The variant's name; a match without a wildcard, so a new variant must be named here
/// (and then in [`every_variant`], or the test below fails).
fn variant(err: &Error) -> &'static str {
    match err {
        Error::Manifest { .. } => "Manifest",
        Error::ManifestValue { .. } => "ManifestValue",
        Error::BadIndex { .. } => "BadIndex",
        Error::Unsigned { .. } => "Unsigned",
        Error::BadSignature { .. } => "BadSignature",
        Error::OlderIndex { .. } => "OlderIndex",
        Error::Expired { .. } => "Expired",
        Error::NotListed { .. } => "NotListed",
        Error::Integrity { .. } => "Integrity",
        Error::Hostile { .. } => "Hostile",
        Error::Fetch { .. } => "Fetch",
        Error::CaFile { .. } => "CaFile",
        Error::Scheme { .. } => "Scheme",
        Error::Key { .. } => "Key",
        Error::Portable { .. } => "Portable",
        Error::State { .. } => "State",
        Error::PackageName { .. } => "PackageName",
        Error::NotAPackage { .. } => "NotAPackage",
        Error::PackageChanged { .. } => "PackageChanged",
        Error::SerializeIndex { .. } => "SerializeIndex",
        Error::PackRaw => "PackRaw",
        Error::IndexExhausted { .. } => "IndexExhausted",
        Error::Inbox { .. } => "Inbox",
        Error::OciReference { .. } => "OciReference",
        Error::RegistryAuth { .. } => "RegistryAuth",
        Error::Push { .. } => "Push",
        Error::DownloadThread => "DownloadThread",
        Error::NothingToRollBack { .. } => "NothingToRollBack",
        Error::Sys { .. } => "Sys",
        Error::NoKeys { .. } => "NoKeys",
        Error::Render { .. } => "Render",
        Error::ExportTaken { .. } => "ExportTaken",
        Error::ExportMissing { .. } => "ExportMissing",
    }
}

const VARIANTS: &[&str] = &[
    "Manifest",
    "ManifestValue",
    "BadIndex",
    "Unsigned",
    "BadSignature",
    "OlderIndex",
    "Expired",
    "NotListed",
    "Integrity",
    "Hostile",
    "Fetch",
    "CaFile",
    "Scheme",
    "Key",
    "Portable",
    "State",
    "PackageName",
    "NotAPackage",
    "PackageChanged",
    "SerializeIndex",
    "PackRaw",
    "IndexExhausted",
    "Inbox",
    "OciReference",
    "RegistryAuth",
    "Push",
    "DownloadThread",
    "NothingToRollBack",
    "Sys",
    "NoKeys",
    "Render",
    "ExportTaken",
    "ExportMissing",
];

#[test]
fn every_variant_is_in_the_rendering_test() {
    let listed: std::collections::BTreeSet<&str> =
        every_variant().iter().map(|(e, _)| variant(e)).collect();
    let missing: Vec<&&str> = VARIANTS.iter().filter(|v| !listed.contains(**v)).collect();
    assert!(missing.is_empty(), "not rendered by the test: {missing:?}");
}
