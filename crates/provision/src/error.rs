//! Errors of provisioning: each names the file, package, url or key it is about and what to do.

use std::path::PathBuf;

/// Everything that can go wrong while provisioning.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A manifest that does not parse or breaks the schema.
    #[error("{file}:{line}:{column}: {message}")]
    Manifest {
        /// The manifest file.
        file: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong: the YAML parser's own text, with what is allowed.
        message: String,
    },
    /// A manifest whose values parse but are not valid.
    #[error("{}: package '{package}': {reason}", file.display())]
    ManifestValue {
        /// The manifest file.
        file: PathBuf,
        /// The package entry.
        package: String,
        /// What is wrong and what is allowed.
        reason: ManifestProblem,
    },
    /// An index that does not parse.
    #[error("repository index {url}: {reason}")]
    BadIndex {
        /// Where the index came from.
        url: String,
        /// What is wrong.
        reason: IndexProblem,
    },
    /// An index without a signature file.
    #[error(
        "repository index {url} is not signed ({url}.sig is missing); publish it with `realms provision publish --key KEY`"
    )]
    Unsigned {
        /// Where the index came from.
        url: String,
    },
    /// An index whose signature does not verify.
    #[error("repository index {url} has a bad signature: {reason}")]
    BadSignature {
        /// Where the index came from.
        url: String,
        /// Why.
        reason: IndexSignatureProblem,
    },
    /// An index with a serial lower than one already seen.
    #[error(
        "repository index {url} has serial {serial}, lower than serial {seen} seen before: refusing a replayed index; publish a new one"
    )]
    OlderIndex {
        /// Where the index came from.
        url: String,
        /// Its serial.
        serial: u64,
        /// The highest serial seen before.
        seen: u64,
    },
    /// An index past its expiry.
    #[error(
        "repository index {url} expired at {expires} (unix time; now {now}): refusing a stale index; publish it again"
    )]
    Expired {
        /// Where the index came from.
        url: String,
        /// Its expiry, seconds since the epoch.
        expires: u64,
        /// Now.
        now: u64,
    },
    /// A package or version the index does not list.
    #[error(
        "package '{package}' version '{version}' is not listed in {url} (stream {stream}); listed: {listed}"
    )]
    NotListed {
        /// The package.
        package: String,
        /// The version asked for.
        version: String,
        /// The index.
        url: String,
        /// The stream.
        stream: String,
        /// What the index lists for it.
        listed: String,
    },
    /// A package whose bytes are not what the index says.
    #[error("package {file} from {url}: {reason}; the download was discarded")]
    Integrity {
        /// The package file.
        file: String,
        /// Where it came from.
        url: String,
        /// Wrong hash, wrong size, not an archive.
        reason: IntegrityProblem,
    },
    /// A tarball with an entry that could hurt the host.
    #[error("package {file} refused: entry '{entry}' {reason}; nothing was installed")]
    Hostile {
        /// The package file.
        file: String,
        /// The offending entry.
        entry: String,
        /// Why.
        reason: realms_image::Hostility,
    },
    /// A transport failure.
    #[error("fetching {url}: {reason}")]
    Fetch {
        /// The url.
        url: String,
        /// What went wrong.
        reason: FetchProblem,
    },
    /// A CA file (`--ca-file`) or system trust store that holds no usable certificate.
    #[error("CA certificates {path}: {reason}")]
    CaFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: CaProblem,
    },
    /// A url with an unsupported scheme.
    #[error("unsupported repository url '{url}': use file://, http(s):// or oci://")]
    Scheme {
        /// The url.
        url: String,
    },
    /// A failure of the image store's keys.
    #[error("key {key}")]
    Key {
        /// The key name or path.
        key: String,
        /// The cause.
        source: Box<realms_image::Error>,
    },
    /// A failure of the portable-service layer.
    #[error("package '{package}'")]
    Portable {
        /// The package.
        package: String,
        /// The cause.
        source: Box<realms_portable::Error>,
    },
    /// A state file that cannot be read.
    #[error("state file {}: {message}; move it away to start afresh", path.display())]
    State {
        /// The state file.
        path: PathBuf,
        /// What is wrong: serde_json's own text, with its line and column.
        message: String,
    },
    /// A file to publish that is not named like a package.
    #[error(
        "{}: a package file is named NAME_VERSION.EXT with EXT one of tar, tar.gz, tar.zst, tar.xz, raw",
        path.display()
    )]
    PackageName {
        /// The file.
        path: PathBuf,
    },
    /// A file to publish that does not unpack.
    #[error("{}: not a valid package", path.display())]
    NotAPackage {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A package file that is in the repository already with other contents.
    #[error(
        "{} exists in the repository with other contents; packages never change: publish a new version",
        path.display()
    )]
    PackageChanged {
        /// The file in the repository.
        path: PathBuf,
    },
    /// An index that does not serialise.
    #[error("writing {}", path.display())]
    SerializeIndex {
        /// The index file.
        path: PathBuf,
        /// Why.
        source: serde_json::Error,
    },
    /// `pack` asked for a raw image.
    #[error("pack makes tarballs, not raw images")]
    PackRaw,
    /// An index's serial or expiry cannot go higher.
    #[error(
        "{index}: its {what} is at the largest number there is; publish with a new stream or a fresh index"
    )]
    IndexExhausted {
        /// Where the index is.
        index: String,
        /// `serial` or `expiry`.
        what: &'static str,
    },
    /// An inbox archive that is refused.
    #[error("{}: {problem}", archive.display())]
    Inbox {
        /// The archive.
        archive: PathBuf,
        /// Why it is refused.
        problem: InboxProblem,
    },
    /// The thread that downloads and hashes a package panicked.
    #[error("the download thread panicked")]
    DownloadThread,
    /// An `oci://` repository url that does not parse.
    #[error("repository url '{url}': {reason}; write oci://HOST[:PORT]/REPO[:TAG|@DIGEST]")]
    OciReference {
        /// The url.
        url: String,
        /// What is wrong.
        reason: OciReferenceProblem,
    },
    /// A registry that refuses the credentials (or wants some and there are none).
    #[error("registry {registry} (repository {repository}): {reason}")]
    RegistryAuth {
        /// The registry, `HOST[:PORT]`.
        registry: String,
        /// The repository on it.
        repository: String,
        /// What the registry said and where the credentials came from.
        reason: AuthProblem,
    },
    /// A push to a registry that failed.
    #[error("pushing to {url}: {reason}")]
    Push {
        /// The url.
        url: String,
        /// What went wrong.
        reason: PushProblem,
    },
    /// `realms provision rollback` with nothing to go back to.
    #[error("cannot roll back package '{package}': {reason}")]
    NothingToRollBack {
        /// The package.
        package: String,
        /// Why not.
        reason: NoRollback,
    },
    /// A failure of realms-sys.
    #[error(transparent)]
    Sys(#[from] realms_sys::Error),
    /// `realms provision ignition` without a key to trust.
    #[error(
        "no trusted key in {} to put in the config: pass the repository's public key with --key",
        dir.display()
    )]
    NoKeys {
        /// The trust store looked in.
        dir: PathBuf,
    },
    /// A config that does not serialise.
    #[error("writing the {format}: {message}")]
    Render {
        /// Ignition JSON or Butane YAML.
        format: &'static str,
        /// Why: the serialiser's own text.
        message: String,
    },
    /// An exported command whose path holds a file realms did not write.
    #[error(
        "{}: exists and was not written by realms for package '{package}'{}: refusing to overwrite it; move it away or drop '{name}' from the package's export",
        path.display(),
        owner.as_deref().map(|o| format!(" (it was written for package '{o}')")).unwrap_or_default()
    )]
    ExportTaken {
        /// The command's path.
        path: PathBuf,
        /// The package exporting it.
        package: String,
        /// The command name.
        name: String,
        /// The package that wrote it, when another package did.
        owner: Option<String>,
    },
    /// An exported command the image does not have.
    #[error(
        "package '{package}': export '{name}': no executable {name} in the image {} (looked in /usr/bin, /bin, /usr/sbin, /sbin, /usr/local/bin, /usr/local/sbin)",
        image.display()
    )]
    ExportMissing {
        /// The package.
        package: String,
        /// The command name.
        name: String,
        /// The image.
        image: PathBuf,
    },
}

/// Why an `oci://` url is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OciReferenceProblem {
    /// It does not start with `oci://`.
    #[error("not an oci:// url")]
    NotOci,
    /// Nothing after the registry.
    #[error("no repository after the registry")]
    NoRepository,
    /// The registry part is not `HOST` or `HOST:PORT`.
    #[error("the registry is HOST or HOST:PORT")]
    BadRegistry,
    /// The repository, tag or digest is refused by the OCI reference grammar; the message is
    /// oci-spec's own text.
    #[error("{0}")]
    Grammar(String),
    /// `publish` to a digest, which names an index that cannot change.
    #[error("a digest names an index that cannot change: publish to the repository or a tag")]
    PublishToDigest,
}

/// Why a package cannot be rolled back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoRollback {
    /// The package is not installed.
    #[error("it is not installed")]
    NotInstalled,
    /// No version older than the current one (and not marked bad) is kept.
    #[error("no earlier version is kept (kept: {})", kept.join(", "))]
    NoEarlier {
        /// The versions kept, the current one first.
        kept: Vec<String>,
    },
}

/// Why a download failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchProblem {
    /// Reading the body (or a local file) failed.
    #[error("{0}")]
    Read(std::io::Error),
    /// More bytes than the caller takes.
    #[error("larger than {limit} bytes")]
    TooLarge {
        /// The most it takes.
        limit: u64,
    },
    /// The request failed, after as many tries as it was worth.
    #[error("{cause} (after {attempts} {})", if *attempts == 1 { "attempt" } else { "attempts" })]
    Failed {
        /// Why the last try failed.
        cause: Transfer,
        /// How many tries were made.
        attempts: u32,
    },
    /// The one request (not retried) failed.
    #[error("{0}")]
    Request(Transfer),
    /// The transfer of a package stopped half-way.
    #[error("{0}; the next try resumes where this one stopped")]
    Cut(std::io::Error),
    /// A package the index lists is not on the server.
    #[error("not found on the server, though the index lists it")]
    Vanished,
    /// The repository has no index for this machine and stream.
    #[error(
        "no index for architecture {arch} and stream {stream}; publish one with `realms provision publish {}--stream {stream}`",
        to.as_ref().map(|r| format!("--to {r} ")).unwrap_or_default()
    )]
    NoIndex {
        /// The architecture.
        arch: String,
        /// The stream.
        stream: String,
        /// The registry to publish to, for an OCI repository.
        to: Option<String>,
    },
    /// The host does not answer `/v2/` as a registry does.
    #[error("not an OCI registry: /v2/ answered {answer}")]
    NotARegistry {
        /// The status and the registry's error codes.
        answer: String,
    },
    /// The registry answered with an error.
    #[error("the registry answered {answer}")]
    Registry {
        /// The status and the registry's error codes.
        answer: String,
    },
}

/// Why a manifest value is refused; each names its key and says what is allowed.
#[derive(Debug, thiserror::Error)]
pub enum ManifestProblem {
    /// A bad package name.
    #[error(
        "key name: a package name is letters, digits, '-', '.' and '+', starting with a letter or digit (no '_', which separates the version)"
    )]
    Name,
    /// A bad version.
    #[error("key version: '{0}' is not a version: use latest or letters, digits and .-+~^")]
    Version(String),
    /// A bad profile name.
    #[error(
        "key profile: '{0}' is not a profile name: use default, nonetwork, strict, trusted or a profile installed on the host"
    )]
    ProfileName(String),
    /// A profile that is nowhere.
    #[error(
        "key profile: no profile '{0}' (no {0}/service.conf where systemd keeps profiles): its exported commands would run without a sandbox"
    )]
    NoProfile(String),
    /// A profile whose service.conf does not parse (the unit parser's words).
    #[error("the profile's service.conf does not parse: {0}")]
    ProfileParse(String),
    /// A health probe not named by its path.
    #[error(
        "key health.command: '{0}' is not an absolute path: the probe runs inside the package's image, name its program by its path there"
    )]
    HealthCommand(String),
    /// A health settle time over an hour.
    #[error("key health.settle: at most 1h; a health check holds the update lock that long")]
    HealthSettle,
    /// A unit to enable or start that is not the package's.
    #[error(
        "key {key}: '{unit}' is not a unit of this package: unit names start with the package name and end in .service, .socket, .timer, .path or .target"
    )]
    Unit {
        /// `enable` or `start`.
        key: &'static str,
        /// The unit named.
        unit: String,
    },
    /// A bad exported command name.
    #[error(
        "key export: '{0}' is not a command name: a plain file name of letters, digits, '-', '_', '.' and '+' (no '/', not starting with '.' or '-')"
    )]
    ExportName(String),
    /// An exported command listed twice.
    #[error("key export: '{0}' is listed twice")]
    ExportTwice(String),
    /// No repository for a package.
    #[error("key repository: no repository, and no default_repository in any manifest file")]
    NoRepository,
    /// A command exported by two packages.
    #[error(
        "key export: '{command}' is exported by package '{other}' too; a command has one package"
    )]
    ExportedTwice {
        /// The command.
        command: String,
        /// The other package.
        other: String,
    },
    /// A bad update window.
    #[error("key updates.windows: {0}")]
    Window(crate::window::WindowProblem),
    /// The fleet_lock strategy without its settings.
    #[error("key updates: strategy fleet_lock needs fleet_lock: {{base_url: ..., group: ...}}")]
    NoFleetLock,
    /// No update slots.
    #[error("key updates: fleet_lock.slots is at least 1")]
    NoSlots,
    /// A drop-in not named .yaml or .yml.
    #[error("a drop-in is read only when its name ends in .yaml or .yml")]
    DropInName,
}

/// Why a repository index (or the OCI artifact holding it) is refused.
#[derive(Debug, thiserror::Error)]
pub enum IndexProblem {
    /// Too large to be an index.
    #[error("larger than {limit} bytes")]
    TooLarge {
        /// The most an index may have.
        limit: u64,
    },
    /// Not the index's JSON.
    #[error("{0}")]
    Json(serde_json::Error),
    /// No serial could be read (before the signature check).
    #[error("no serial: {0}")]
    NoSerial(serde_json::Error),
    /// A format this realms does not read.
    #[error("format '{format}' is not '{expected}'; a newer realms may read it")]
    Format {
        /// The index's format.
        format: String,
        /// The one this realms reads.
        expected: &'static str,
    },
    /// An entry with a bad version, file name or hash.
    #[error(
        "package '{package}' version '{version}': file '{file}' or hash '{sha256}' is not valid"
    )]
    Entry {
        /// The package.
        package: String,
        /// The version.
        version: String,
        /// The file named.
        file: String,
        /// The hash stated.
        sha256: String,
    },
    /// A file not named after its package and version.
    #[error("file '{file}' is not named {package}_{version}.EXT")]
    FileName {
        /// The file named.
        file: String,
        /// The package.
        package: String,
        /// The version.
        version: String,
    },
    /// A layer larger than it may be.
    #[error("a layer of {size} bytes, more than {limit}")]
    LayerTooLarge {
        /// Its size.
        size: u64,
        /// The most it may have.
        limit: u64,
    },
    /// Not an OCI image manifest (the OCI library's words).
    #[error("not an OCI image manifest: {0}")]
    NotAManifest(String),
    /// Not exactly one layer of the type needed.
    #[error("{count} layers of type {media}, not one")]
    Layers {
        /// How many there are.
        count: usize,
        /// The media type.
        media: String,
    },
    /// A manifest that is not the one its pinned digest names.
    #[error("the manifest's digest is not {digest}")]
    Digest {
        /// The digest asked for.
        digest: String,
    },
    /// An artifact that is not a realms index.
    #[error("artifactType {}, not {expected}: not a realms index", found.as_deref().unwrap_or("(none)"))]
    ArtifactType {
        /// Its artifact type.
        found: Option<String>,
        /// The type of a realms index.
        expected: &'static str,
    },
}

/// Why a registry's authentication failed.
#[derive(Debug, thiserror::Error)]
pub enum AuthProblem {
    /// A credentials file (Docker's `config.json`) that cannot be used.
    #[error("credentials file {}: {problem}", file.display())]
    CredentialsFile {
        /// The file.
        file: PathBuf,
        /// What is wrong in it.
        problem: CredentialsProblem,
    },
    /// A `WWW-Authenticate` header that does not parse.
    #[error("an authentication challenge it cannot read: '{header}'")]
    Challenge {
        /// The header.
        header: String,
    },
    /// Basic authentication asked for, and no credentials.
    #[error("it asks for a user and password, and there are none for {registry} in {files}")]
    NoCredentials {
        /// The registry.
        registry: String,
        /// The credentials files looked in.
        files: String,
    },
    /// The credentials were refused.
    #[error("it refused the credentials ({whose}): {answer}")]
    Refused {
        /// Whose credentials: `user U from FILE`, or `no credentials`.
        whose: String,
        /// The status and the registry's error codes.
        answer: String,
    },
    /// A bearer challenge without its realm.
    #[error("a bearer challenge without realm: '{header}'")]
    NoRealm {
        /// The header.
        header: String,
    },
    /// The token service refused a token.
    #[error("its token service {realm} refused a token ({whose}): {answer}")]
    TokenRefused {
        /// The token service.
        realm: String,
        /// Whose credentials: `user U from FILE`, or `no credentials`.
        whose: String,
        /// The status and the service's error codes.
        answer: String,
    },
    /// The token service answered without a token.
    #[error("its token service {realm} answered no token{}", json.as_ref().map(|e| format!(": {e}")).unwrap_or_default())]
    NoToken {
        /// The token service.
        realm: String,
        /// Why its answer did not parse, if it did not.
        json: Option<serde_json::Error>,
    },
    /// An authentication scheme other than basic and bearer.
    #[error("it asks for {0} authentication; Realms speaks basic and bearer")]
    Scheme(String),
    /// A request refused.
    #[error("{what}: denied, {answer}")]
    Denied {
        /// The request (`reading URL`, `writing URL`).
        what: String,
        /// The status and the registry's error codes.
        answer: String,
    },
}

/// What is wrong in a credentials file.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsProblem {
    /// Not JSON of the expected shape.
    #[error("{0}")]
    Json(serde_json::Error),
    /// An `auth` that is not base64.
    #[error("auth is not base64: {0}")]
    NotBase64(base64::DecodeError),
    /// An `auth` that is not UTF-8.
    #[error("auth is not UTF-8")]
    NotUtf8,
    /// An `auth` without `:`.
    #[error("auth is not base64 of USER:PASSWORD")]
    NoColon,
    /// Neither `auth` nor user and password.
    #[error("no auth, nor username and password")]
    Nothing,
}

/// Why a push to a registry failed.
#[derive(Debug, thiserror::Error)]
pub enum PushProblem {
    /// The registry answered with an error.
    #[error("the registry answered {answer}")]
    Registry {
        /// The status and the registry's error codes.
        answer: String,
    },
    /// The registry accepted an upload without saying where to send it.
    #[error("the registry gave no upload location")]
    NoUploadLocation,
    /// A digest the OCI library does not take (its words).
    #[error("not a digest: {0}")]
    Digest(String),
    /// The OCI library could not build the manifest (its words).
    #[error("building the manifest: {0}")]
    BuildManifest(String),
    /// The manifest did not serialise.
    #[error("serialising the manifest: {0}")]
    SerializeManifest(serde_json::Error),
}

/// Why one HTTP request failed.
#[derive(Debug, thiserror::Error)]
pub enum Transfer {
    /// The HTTP client's own words (connection, TLS, timeout).
    #[error("{0}")]
    Client(String),
    /// Reading the answer failed.
    #[error("{0}")]
    Read(std::io::Error),
    /// A 5xx answer.
    #[error("server error {0}")]
    ServerError(u16),
    /// Another status that is not an answer.
    #[error("the server answered {0}")]
    Status(u16),
}

/// Why a package's bytes are not what the index says.
#[derive(Debug, thiserror::Error)]
pub enum IntegrityProblem {
    /// Hash or size differ from the index's.
    #[error(
        "its SHA-256 is {sha256} and size {size}, but the index states {listed_sha256} and {listed_size}"
    )]
    Sha256 {
        /// The hash of what came.
        sha256: String,
        /// The bytes that came.
        size: u64,
        /// The hash the index states.
        listed_sha256: String,
        /// The size the index states.
        listed_size: u64,
    },
    /// More bytes came than the index states (the transfer was stopped there).
    #[error("larger than the {listed_size} bytes the index states")]
    Larger {
        /// The size the index states.
        listed_size: u64,
    },
    /// An OCI blob whose digest or size is not the one its manifest names.
    #[error("its digest is {digest} and size {size}")]
    Digest {
        /// The digest of what came.
        digest: String,
        /// The bytes that came.
        size: u64,
    },
    /// The compressed stream does not decompress.
    #[error("cannot decompress: {0}")]
    Decompress(std::io::Error),
    /// Not a tar archive (the tar reader's words, with the entry it was at).
    #[error("not a valid tar archive: {}{reason}", entry.as_ref().map(|e| format!("entry {e}: ")).unwrap_or_default())]
    Tar {
        /// The entry, when the reader got to one.
        entry: Option<String>,
        /// The tar reader's own text.
        reason: String,
    },
    /// Another failure of the unpacker, shown inline with its causes.
    #[error("{}", chain_text(.0.as_ref()))]
    Unpacker(Box<realms_image::Error>),
}

/// Why a CA certificate file is refused.
#[derive(Debug, thiserror::Error)]
pub enum CaProblem {
    /// The PEM parser failed (its own words).
    #[error("{0}")]
    Pem(String),
    /// It holds no certificate.
    #[error("no PEM certificate in it")]
    Empty,
}

/// Why a repository index's signature does not verify.
#[derive(Debug, thiserror::Error)]
pub enum IndexSignatureProblem {
    /// Signed by a key that is not trusted.
    #[error("signed by key {0}, which is not trusted; add its public key to /etc/realms/keys.d/")]
    Untrusted(String),
    /// The signature file is malformed or does not verify.
    #[error("{0}")]
    Bad(realms_image::SignatureProblem),
    /// Another failure of the signature check, shown inline with its causes.
    #[error("{}", chain_text(.0.as_ref()))]
    Other(Box<realms_image::Error>),
}

/// Why an inbox archive is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InboxProblem {
    /// Not named `NAME_VERSION.tar.*`.
    Name,
    /// A raw image.
    Raw,
    /// A service for root outside the trusted profile.
    RootUntrusted,
    /// No such user account.
    NoUser(String),
}

impl std::fmt::Display for InboxProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InboxProblem::Name => f.write_str(
                "an inbox archive is named NAME_VERSION.tar.gz (or .tar, .tar.zst, .tar.xz)",
            ),
            InboxProblem::Raw => {
                f.write_str("raw images are not taken from the inbox; use a repository")
            }
            InboxProblem::RootUntrusted => f.write_str(
                "services run as root only under the trusted profile (/opt/inbox/trusted/root/)",
            ),
            InboxProblem::NoUser(user) => {
                write!(f, "there is no user '{user}' (create the account first)")
            }
        }
    }
}

/// The error and each of its causes, `: `-separated, as the CLI prints it (`{:#}`): for
/// messages written to files, such as the inbox's `.error`.
pub fn chain_text(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

impl Error {
    /// An I/O error on `path`.
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Sys(realms_sys::Error::io(action, path, source))
    }
}

/// The result of provisioning operations.
pub type Result<T> = std::result::Result<T, Error>;

#[cfg(test)]
mod tests;
