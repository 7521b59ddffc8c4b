//! Errors of the image store: each names the image or path it is about and what to do.

use std::path::PathBuf;

/// Everything that can go wrong in the image store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A realm, image or snapshot name that breaks the name rule.
    #[error("invalid {kind} name '{name}': {rule}")]
    InvalidName {
        /// What is named (`realm`, `image`, ...).
        kind: &'static str,
        /// The name given.
        name: String,
        /// The rule it breaks.
        rule: &'static str,
    },
    /// No image of that name.
    #[error("application image '{name}' not found at {}; `realms appimg list` shows the images there are", path.display())]
    NotFound {
        /// The image.
        name: String,
        /// Where it was looked for.
        path: PathBuf,
    },
    /// An image of that name exists already.
    #[error("application image '{name}' already exists at {}; remove it first with `realms appimg remove {name}`", path.display())]
    Exists {
        /// The image.
        name: String,
        /// Where it is.
        path: PathBuf,
    },
    /// No previous version to roll back to.
    #[error("application image '{name}' has no previous version to roll back to ({} is missing)", path.display())]
    NoPrevious {
        /// The image.
        name: String,
        /// The missing previous version.
        path: PathBuf,
    },
    /// The image is rolled back already.
    #[error(
        "application image '{name}' is already rolled back: its current version {current} is older than {name}.appimg.prev (version {newer}), and there is no older version to go back to; `realms update-appimg {name}` makes a new version"
    )]
    AlreadyRolledBack {
        /// The image.
        name: String,
        /// The current version.
        current: String,
        /// The newer version kept as `.prev`.
        newer: String,
    },
    /// `appimg build --from` names neither an image nor a directory.
    #[error(
        "no application image or directory named '{name}' to build from; `realms appimg list` shows the images there are"
    )]
    NoBuildSource {
        /// The name given.
        name: String,
    },
    /// No private key of that name.
    #[error(
        "no private key named '{name}' at {}; `realms appimg key list` shows the keys there are, or pass the path of a key file",
        path.display()
    )]
    NoSuchKey {
        /// The key.
        name: String,
        /// The file.
        path: PathBuf,
    },
    /// An image source that cannot be imported.
    #[error("bad image source '{source_spec}': {reason}")]
    BadSource {
        /// The source as given.
        source_spec: String,
        /// Why.
        reason: SourceProblem,
    },
    /// A directory that is not an operating system tree.
    #[error("{} is not an operating system tree: {reason}", path.display())]
    NotAnOsTree {
        /// The file.
        path: PathBuf,
        /// What it lacks.
        reason: OsTreeProblem,
    },
    /// A key file that cannot be used.
    #[error("key {}: {problem}", path.display())]
    Key {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: KeyProblem,
    },
    /// A sealed image without a signature.
    #[error("application image '{name}' is not signed, so it cannot be trusted as a sealed image")]
    Unsigned {
        /// The image.
        name: String,
    },
    /// A sealed image signed by a key that is not trusted.
    #[error(
        "application image '{name}' is signed by key {fingerprint}, which is not trusted; add its public key to /etc/realms/keys.d/"
    )]
    Untrusted {
        /// The image.
        name: String,
        /// The key's fingerprint.
        fingerprint: String,
    },
    /// A signature that does not verify.
    #[error("application image '{name}' has a bad signature: {reason}")]
    BadSignature {
        /// The image.
        name: String,
        /// Why.
        reason: SignatureProblem,
    },
    /// An image whose content does not match its signed metadata.
    #[error("application image '{name}' has been tampered with: {reason}")]
    Tampered {
        /// The image.
        name: String,
        /// What does not match.
        reason: Tamper,
    },
    /// An install of an older version without --allow-downgrade.
    #[error(
        "application image '{name}': version {new} is older than the installed {installed}; pass --allow-downgrade to install it anyway"
    )]
    Downgrade {
        /// The image.
        name: String,
        /// The installed version.
        installed: String,
        /// The version offered.
        new: String,
    },
    /// An image name once sealed is no longer signed.
    #[error(
        "application image '{name}' was sealed (recorded in {}) but is not signed now; `realms appimg unseal {name}` first if it is meant to be unsealed",
        record.display()
    )]
    SealStripped {
        /// The image.
        name: String,
        /// The file that records the seal.
        record: PathBuf,
    },
    /// A signed version older than the highest accepted for the name.
    #[error(
        "application image '{name}': signed version {version} is older than version {highest}, the highest accepted (recorded in {}); `realms appimg build --allow-downgrade` installs an older version on purpose",
        record.display()
    )]
    SealedDowngrade {
        /// The image.
        name: String,
        /// The version offered.
        version: String,
        /// The highest version accepted.
        highest: String,
        /// The file that records the seal.
        record: PathBuf,
    },
    /// A format that writes holes out in full would not fit in the store.
    #[error(
        "application image '{name}': the tree's files hold {total} bytes, which {format} writes out in full (holes included), and the store has {free} bytes free; the largest is {} ({largest_size} bytes); build with --format squashfs, which keeps holes, or leave it out",
        largest.display()
    )]
    BuildTooBig {
        /// The image.
        name: String,
        /// The image format.
        format: String,
        /// The bytes the files hold.
        total: u64,
        /// The bytes free in the store.
        free: u64,
        /// The largest file.
        largest: PathBuf,
        /// Its size in bytes.
        largest_size: u64,
    },
    /// An archive entry refused by the safe unpacker.
    #[error("archive {archive}: entry '{entry}' {reason}")]
    HostileEntry {
        /// The archive.
        archive: String,
        /// The entry.
        entry: String,
        /// Why.
        reason: Hostility,
    },
    /// An archive that is truncated or corrupt.
    #[error("archive {archive} is truncated or corrupt{}: {reason}", entry.as_ref().map(|e| format!(" (in entry '{e}')")).unwrap_or_default())]
    BadArchive {
        /// The archive.
        archive: String,
        /// The entry.
        entry: Option<String>,
        /// Why: the tar reader's own error text (kept as text: the entry and archive are
        /// named beside it).
        reason: String,
    },
    /// An image.meta that does not parse.
    #[error("{}{}: {message}", path.display(), line.map(|l| format!(": line {l}")).unwrap_or_default())]
    BadMeta {
        /// The file.
        path: PathBuf,
        /// The 1-based line, when the error is about one.
        line: Option<usize>,
        /// What is wrong: the TOML parser's (or serialiser's) own text, or that the file
        /// is not UTF-8.
        message: String,
    },
    /// A tree image is used in place, never mounted.
    #[error("application image '{name}' is a tree image, which is used in place and never mounted")]
    TreeNotMounted {
        /// The image.
        name: String,
    },
    /// The dm-verity hash tree could not be computed.
    #[error("computing the dm-verity hash tree of {}", path.display())]
    Verity {
        /// The image file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: realms_verity::Error,
    },
    /// A system call, command or I/O error (it names its path).
    #[error(transparent)]
    Sys(#[from] realms_sys::Error),
}

/// The result of this crate's operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why the safe unpacker refuses an archive entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Hostility {
    /// An absolute path.
    #[error("has an absolute path")]
    AbsolutePath,
    /// A `..` component.
    #[error("has '..' in its path")]
    ParentDir,
    /// Something other than a directory at the root.
    #[error("replaces the root of the tree")]
    ReplacesRoot,
    /// Setuid or setgid outside the trusted profile.
    #[error("is setuid or setgid, which only the trusted profile allows")]
    Setuid,
    /// A hardlink whose target leaves the tree.
    #[error("is a hardlink leading outside the image")]
    HardlinkOutside,
    /// A hardlink to something not unpacked before as a file.
    #[error("is a hardlink to something that is not a file unpacked before it")]
    HardlinkNotFile,
    /// A tar entry type the unpacker does not take.
    #[error("has an unsupported type {0}")]
    UnsupportedType(String),
    /// The tree would exceed the size allowed.
    #[error("makes the unpacked files larger than the {0} bytes allowed")]
    TooBig(u64),
    /// A link (`symlink`, `hardlink`) without a target.
    #[error("is a {0} without a target")]
    NoTarget(&'static str),
    /// A FIFO where the policy refuses them.
    #[error("is a FIFO")]
    Fifo,
    /// A device node where the policy refuses them.
    #[error("is a device node")]
    DeviceNode,
    /// A path through a symlink an earlier entry made.
    #[error("is written through the symlink '{}' an earlier entry made", .0.display())]
    ThroughSymlink(PathBuf),
    /// A path below something that is not a directory.
    #[error("lies below a file")]
    BelowFile,
    /// An entry that would replace a directory.
    #[error("replaces a directory")]
    ReplacesDirectory,
    /// A symlink to an absolute path where the policy wants relative ones.
    #[error("is a symlink to the absolute path {} (`realms provision pack` makes such links relative)", .0.display())]
    AbsoluteSymlink(PathBuf),
    /// A symlink that leads out of the tree.
    #[error("is a symlink to {} outside the image", .0.display())]
    SymlinkOutside(PathBuf),
}

/// Why an import source is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceProblem {
    /// `debootstrap:` without a valid suite.
    #[error("expected debootstrap:SUITE[:PACKAGE,...], e.g. debootstrap:bookworm:vim,curl")]
    DebootstrapSyntax,
    /// A package in a `debootstrap:` source that is not a Debian package name.
    #[error("'{0}' is not a Debian package name")]
    PackageName(String),
    /// A tarball path that is not a file.
    #[error("no such tarball")]
    NoTarball,
    /// Neither a directory, a tarball nor `debootstrap:`.
    #[error(
        "not a directory, a tarball (.tar, .tar.gz, .tar.zst, .tar.xz) or debootstrap:SUITE[:PACKAGE,...]"
    )]
    Unknown,
    /// debootstrap needs a mirror and apt's sources name none.
    #[error("no Debian mirror found in {} or {}; configure apt first", deb822.display(), list.display())]
    NoMirror {
        /// The deb822 sources file read.
        deb822: PathBuf,
        /// The one-line sources file read.
        list: PathBuf,
    },
}

/// What a directory lacks to be an operating system tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OsTreeProblem {
    /// No `/usr`.
    #[error("it has no /usr")]
    NoUsr,
    /// No os-release file.
    #[error("it has neither /etc/os-release nor /usr/lib/os-release")]
    NoOsRelease,
}

/// What is wrong with a key file (or why a new one is not written).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyProblem {
    /// `appimg key generate` would overwrite it.
    #[error("a key of that name exists already")]
    Exists,
    /// The file is not text.
    #[error("not UTF-8 text")]
    NotUtf8,
    /// The first line is not the header realms writes.
    #[error("not a realms {kind} key (the first line must be '{header}')")]
    Header {
        /// "public" or "private".
        kind: String,
        /// The header expected.
        header: String,
    },
    /// The second line is not 32 bytes in hex.
    #[error("line 2 must be the 32-byte key in hex")]
    NotHex,
    /// The key bytes are not a valid ed25519 public key.
    #[error("not a valid ed25519 public key")]
    NotEd25519,
}

/// Why an image's signature file does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureProblem {
    /// The signature file is not UTF-8.
    #[error("{} is malformed: not UTF-8", path.display())]
    NotUtf8 {
        /// The signature file.
        path: PathBuf,
    },
    /// The signature file is not the TOML expected; `message` is the TOML parser's own text.
    #[error("{} is malformed: {message}", path.display())]
    Malformed {
        /// The signature file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// The file parses but is not byte for byte what `sign` writes.
    #[error("{} is not in the form realms writes", path.display())]
    NotCanonical {
        /// The signature file.
        path: PathBuf,
    },
    /// The signature field is not 64 bytes in lowercase hex.
    #[error("{} holds no 64-byte signature", path.display())]
    NoSignature {
        /// The signature file.
        path: PathBuf,
    },
    /// The signature does not verify against the metadata.
    #[error("the signature by key '{key}' does not match the image metadata")]
    Mismatch {
        /// The trusted key's name.
        key: String,
    },
}

/// What of a sealed image does not match its signed metadata.
#[derive(Debug, thiserror::Error)]
pub enum Tamper {
    /// image.meta changed between the check and the mount.
    #[error("image.meta changed while it was verified")]
    MetaChanged,
    /// The signed image.meta is not UTF-8.
    #[error("image.meta is not UTF-8")]
    MetaNotUtf8,
    /// The signed metadata is another image's.
    #[error("its signed metadata names image '{0}'")]
    OtherImage(String),
    /// The signed metadata has no verity section.
    #[error("its signed metadata has no verity parameters")]
    NoVerity,
    /// The root hash sidecar differs from the signed root hash.
    #[error("image.roothash does not match the signed root hash")]
    RootHashSidecar,
    /// A verity parameter in the signed metadata is unusable.
    #[error("its signed metadata has a bad {0}")]
    BadParameter(&'static str),
    /// The verity superblock's padding is not zero.
    #[error("byte {0} of image.verity, in the superblock's padding, is not zero")]
    Padding(usize),
    /// The data or hash tree does not verify; the verity error (with its causes) is shown
    /// inline, so it prints once.
    #[error("{}", chain_of(.0))]
    Verity(realms_verity::Error),
}

fn chain_of(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// The 1-based line a TOML parse error points at in `text` (`None` when it points nowhere).
/// The realm crate's config errors use it too, so every TOML file is reported the same way.
pub fn toml_line(text: &str, err: &toml::de::Error) -> Option<usize> {
    let offset = err.span()?.start.min(text.len());
    Some(
        text.as_bytes()[..offset]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(text: &str) -> String {
        text.to_string()
    }

    /// Every variant, with the text that names its subject.
    fn every_variant() -> Vec<(Error, &'static str)> {
        let p = |path: &str| PathBuf::from(path);
        vec![
            (
                Error::InvalidName {
                    kind: "image",
                    name: s("Bad"),
                    rule: "lowercase",
                },
                "'Bad'",
            ),
            (
                Error::NotFound {
                    name: s("a"),
                    path: p("/s/a.appimg"),
                },
                "'a'",
            ),
            (
                Error::Exists {
                    name: s("b"),
                    path: p("/s/b.appimg"),
                },
                "'b'",
            ),
            (
                Error::NoPrevious {
                    name: s("c"),
                    path: p("/s/c.appimg.prev"),
                },
                "'c'",
            ),
            (
                Error::AlreadyRolledBack {
                    name: s("d"),
                    current: s("1"),
                    newer: s("2"),
                },
                "'d'",
            ),
            (Error::NoBuildSource { name: s("e") }, "'e'"),
            (
                Error::NoSuchKey {
                    name: s("k"),
                    path: p("/keys/k"),
                },
                "'k'",
            ),
            (
                Error::BadSource {
                    source_spec: s("ftp:x"),
                    reason: SourceProblem::Unknown,
                },
                "'ftp:x'",
            ),
            (
                Error::NotAnOsTree {
                    path: p("/t"),
                    reason: OsTreeProblem::NoUsr,
                },
                "/t",
            ),
            (
                Error::Key {
                    path: p("/keys/x.pub"),
                    problem: KeyProblem::NotHex,
                },
                "/keys/x.pub",
            ),
            (Error::Unsigned { name: s("f") }, "'f'"),
            (
                Error::Untrusted {
                    name: s("g"),
                    fingerprint: s("ab12"),
                },
                "'g'",
            ),
            (
                Error::BadSignature {
                    name: s("h"),
                    reason: SignatureProblem::Mismatch { key: s("k") },
                },
                "'h'",
            ),
            (
                Error::Tampered {
                    name: s("i"),
                    reason: Tamper::RootHashSidecar,
                },
                "'i'",
            ),
            (
                Error::Tampered {
                    name: s("i2"),
                    reason: Tamper::Verity(realms_verity::Error::Io {
                        action: "reading",
                        device: realms_verity::Device::Data,
                        offset: 4096,
                        source: std::io::Error::other("eio"),
                    }),
                },
                "'i2' has been tampered with: reading the data device at byte 4096: eio",
            ),
            (
                Error::Downgrade {
                    name: s("j"),
                    installed: s("2"),
                    new: s("1"),
                },
                "'j'",
            ),
            (
                Error::SealStripped {
                    name: s("m"),
                    record: p("/s/.seals/m"),
                },
                "'m'",
            ),
            (
                Error::BuildTooBig {
                    name: s("o"),
                    format: s("erofs"),
                    total: 1 << 40,
                    free: 1 << 30,
                    largest: p("/t/usr/sparse"),
                    largest_size: 1 << 40,
                },
                "'o'",
            ),
            (
                Error::HostileEntry {
                    archive: s("x.tar"),
                    entry: s("etc/evil"),
                    reason: Hostility::DeviceNode,
                },
                "etc/evil",
            ),
            (
                Error::BadArchive {
                    archive: s("y.tar"),
                    entry: Some(s("usr/big")),
                    reason: s("unexpected EOF"),
                },
                "usr/big",
            ),
            (
                Error::SealedDowngrade {
                    name: s("n"),
                    version: s("1"),
                    highest: s("2"),
                    record: p("/s/.seals/n"),
                },
                "'n'",
            ),
            (
                Error::BadMeta {
                    path: p("/s/l.appimg/image.meta"),
                    line: Some(2),
                    message: s("missing field"),
                },
                "image.meta: line 2",
            ),
            (Error::TreeNotMounted { name: s("m") }, "'m'"),
            (
                Error::Verity {
                    path: p("/s/.staging-n"),
                    source: realms_verity::Error::HashOffset { offset: 7 },
                },
                "/s/.staging-n",
            ),
            (
                Error::Sys(realms_sys::Error::io(
                    "opening",
                    "/s/q",
                    std::io::Error::from_raw_os_error(2),
                )),
                "/s/q",
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
                let inner = cause.to_string();
                assert!(
                    !level.to_string().contains(&inner),
                    "{text:?}: {inner:?} prints twice"
                );
                text.push_str(&format!(": {inner}"));
                level = cause;
            }
            assert!(text.contains(subject), "{text:?} does not name {subject:?}");
        }
    }

    #[test]
    fn toml_errors_name_their_line() {
        let text = "name = \"a\"\nversion = \n";
        let err = toml::from_str::<toml::Value>(text).unwrap_err();
        assert_eq!(toml_line(text, &err), Some(2));
    }
}
