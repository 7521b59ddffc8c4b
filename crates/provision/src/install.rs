//! One package, one pass: fetch, hash, decompress and unpack into a staging directory on the
//! target file system; renamed to `/var/lib/portables/NAME_VERSION` only when the hash and size
//! match the (verified) index. The download is also written to the cache
//! (`/var/cache/realms/provision`) so a cut download resumes where it stopped and a machine
//! without network can reinstall from it.

use realms_sys::IoContext;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use realms_sys::event::Event;
use sha2::{Digest, Sha256};

use crate::fetch::{Fetcher, join};
use crate::index::{Entry, Ext};
use crate::unpack::{Limits, decoder, unpack_tar};
use crate::{Error, FetchProblem, IndexProblem, IntegrityProblem, Result};

/// Where images go, under the root.
pub const PORTABLES: &str = "var/lib/portables";
/// The download cache, under the root.
pub const CACHE: &str = "var/cache/realms/provision";
/// The prefix of staging directories under [`PORTABLES`].
pub const STAGING_PREFIX: &str = ".realms-provision-";

/// The image path an entry is installed as, under the root.
pub fn image_path(root: &Path, name: &str, entry: &Entry) -> PathBuf {
    let base = format!("{name}_{}", entry.version);
    let file = match Ext::of(&entry.file, name, &entry.version) {
        Some(Ext::Raw) => format!("{base}.raw"),
        _ => base,
    };
    root.join(PORTABLES).join(file)
}

/// Reads through, hashing and counting, and failing past `limit` bytes.
struct Hashing<R> {
    inner: R,
    hash: Sha256,
    count: u64,
    limit: u64,
    over: bool,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.count += n as u64;
        if self.count > self.limit {
            self.over = true;
            return Err(io::Error::other(format!(
                "larger than the {} bytes the index states",
                self.limit
            )));
        }
        Ok(n)
    }
}

/// Writes what it reads into the cache's `.part` file.
struct Tee<R> {
    inner: R,
    file: fs::File,
}

impl<R: Read> Read for Tee<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.file.write_all(&buf[..n])?;
        Ok(n)
    }
}

/// Removes what a killed apply left: staging directories under /var/lib/portables, and the
/// temporary files of atomic writes in the state directory and the cache (with its index
/// directories). Called with the provisioning lock held.
pub fn clean_staging(root: &Path) {
    if let Ok(entries) = fs::read_dir(root.join(PORTABLES)) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(STAGING_PREFIX) {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }
    let mut dirs = vec![root.join(crate::state::DIR), root.join(CACHE)];
    if let Ok(entries) = fs::read_dir(root.join(CACHE).join("index")) {
        dirs.extend(entries.flatten().map(|e| e.path()));
    }
    for dir in dirs {
        for e in fs::read_dir(&dir).into_iter().flatten().flatten() {
            if realms_sys::atomic::is_temp_name(&e.file_name()) {
                let _ = fs::remove_file(e.path());
            }
        }
    }
}

/// The cached copy of a package and its part while it downloads, named by the hash the
/// index states (so a file of the same name from elsewhere is never taken for it).
fn cache_paths(cache: &Path, entry: &Entry) -> (PathBuf, PathBuf) {
    let base = format!("{}-{}", &entry.sha256[..16], entry.file);
    (cache.join(&base), cache.join(format!("{base}.part")))
}

/// The source stream of a package: the complete cached copy, or the cached part followed by
/// the rest from the repository (written to the cache as it is read).
fn source(
    open: &Opener<'_>,
    url: &str,
    cache: &Path,
    entry: &Entry,
) -> Result<Box<dyn Read + Send>> {
    let (done, part) = cache_paths(cache, entry);
    if let Ok(f) = fs::File::open(&done) {
        return Ok(Box::new(f));
    }
    fs::create_dir_all(cache).ctx("creating", cache)?;
    let have = fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
    let have = if have > entry.size { 0 } else { have };
    let append = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&part)
        .ctx("opening", &part)?;
    append.set_len(have).ctx("truncating", &part)?;
    if have > 0 {
        tracing::info!("resuming {url} at byte {have} of {}", entry.size);
    }
    let rest = open(have)?.ok_or_else(|| Error::Fetch {
        url: url.to_string(),
        reason: FetchProblem::Vanished,
    })?;
    let head = fs::File::open(&part).ctx("opening", &part)?;
    Ok(Box::new(head.take(have).chain(Tee {
        inner: rest,
        file: append,
    })))
}

/// Opens the package's bytes from an offset (`None`: the repository lacks it).
type Opener<'a> = dyn Fn(u64) -> Result<Option<Box<dyn Read + Send>>> + 'a;

/// Where a package comes from: a repository for an architecture, through a fetcher.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    /// The transports.
    pub fetcher: &'a Fetcher,
    /// The repository url.
    pub repo: &'a str,
    /// The architecture directory.
    pub arch: &'a str,
}

/// Installs package `name` as the verified index `entry` describes from `origin`; returns the
/// installed image path. `allow_setuid` is the `trusted` profile. How far the package is read
/// goes to `progress` as [`Event::Transfer`].
pub fn install(
    root: &Path,
    origin: Origin<'_>,
    name: &str,
    entry: &Entry,
    allow_setuid: bool,
    progress: &mut dyn FnMut(Event),
) -> Result<PathBuf> {
    let Origin {
        fetcher,
        repo,
        arch,
    } = origin;
    let ext = Ext::of(&entry.file, name, &entry.version).ok_or_else(|| Error::BadIndex {
        url: repo.to_string(),
        reason: IndexProblem::FileName {
            file: entry.file.clone(),
            package: name.to_string(),
            version: entry.version.clone(),
        },
    })?;
    // An OCI registry serves the package as the blob whose digest is its SHA-256.
    let oci = crate::oci::is_oci(repo);
    let url = if oci {
        crate::oci::blob_url(repo, &entry.sha256)?
    } else {
        join(repo, arch, &entry.file)
    };
    let open = |offset: u64| {
        if oci {
            crate::oci::open_blob(root, fetcher, repo, &entry.sha256, offset)
        } else {
            fetcher.open(&url, offset)
        }
    };
    let portables = root.join(PORTABLES);
    fs::create_dir_all(&portables).ctx("creating", &portables)?;
    let staging = portables.join(format!(
        "{STAGING_PREFIX}{name}_{}-{}",
        entry.version,
        std::process::id()
    ));
    let _ = fs::remove_dir_all(&staging);
    fs::create_dir(&staging).ctx("creating", &staging)?;
    let cache = root.join(CACHE);
    let result = stage(
        &open,
        &url,
        &cache,
        entry,
        ext,
        &staging,
        allow_setuid,
        progress,
    );
    let result = result.and_then(|()| {
        let target = image_path(root, name, entry);
        let from = match ext {
            Ext::Raw => staging.join("image.raw"),
            _ => staging.join("tree"),
        };
        if target.exists() {
            crate::portable::remove_image(&target)?;
        }
        realms_sys::failpoint::hit("provision-unpacked");
        realms_sys::atomic::rename_noreplace(&from, &target)?;
        realms_sys::atomic::fsync_dir(&portables)?;
        realms_sys::failpoint::hit("provision-installed");
        Ok(target)
    });
    let _ = fs::remove_dir_all(&staging);
    result
}

#[allow(clippy::too_many_arguments)]
fn stage(
    open: &Opener<'_>,
    url: &str,
    cache: &Path,
    entry: &Entry,
    ext: Ext,
    staging: &Path,
    allow_setuid: bool,
    progress: &mut dyn FnMut(Event),
) -> Result<()> {
    let hashing = Hashing {
        inner: source(open, url, cache, entry)?,
        hash: Sha256::new(),
        count: 0,
        limit: entry.size,
        over: false,
    };
    let limits = Limits {
        installed_size: entry.installed_size,
        allow_setuid,
    };
    // Fetching and hashing run on their own thread, decompressing and unpacking on this one:
    // still one pass over the bytes, on two cores.
    let (tx, rx) = std::sync::mpsc::sync_channel(16);
    let reader = std::thread::spawn(move || fetch_thread(hashing, tx));
    progress(Event::transfer(&entry.file, 0, entry.size));
    let mut piped = Piped {
        rx,
        buf: Vec::new(),
        pos: 0,
        seen: 0,
        what: &entry.file,
        total: entry.size,
        progress,
    };
    let unpacked = unpack_one(&mut piped, entry, ext, staging, &limits);
    // Read to the end: the hash covers the whole file, whatever the unpacker needed.
    let drained = io::copy(&mut piped, &mut io::sink());
    drop(piped);
    let (hashing, cut) = reader.join().map_err(|_| Error::DownloadThread)?;
    let (done, part) = cache_paths(cache, entry);
    let digest = hex::encode(hashing.hash.finalize());
    let integrity = |reason: IntegrityProblem| Error::Integrity {
        file: entry.file.clone(),
        url: url.to_string(),
        reason,
    };
    // Regression: a cut transfer was taken for a complete short file when the unpacker had
    // already failed on the cut's error and the drain then saw a clean end.
    if let Some(e) = cut.or(drained.err()) {
        if hashing.over {
            let _ = fs::remove_file(&part);
            let _ = fs::remove_file(&done);
            return Err(integrity(IntegrityProblem::Larger {
                listed_size: entry.size,
            }));
        }
        return Err(Error::Fetch {
            url: url.to_string(),
            reason: FetchProblem::Cut(e),
        });
    }
    // A cut transfer ended with an error above (ureq checks Content-Length and the chunked
    // framing); a clean end short of the size is the whole file, and it is not the one listed.
    if hashing.count != entry.size || digest != entry.sha256 {
        let _ = fs::remove_file(&part);
        let _ = fs::remove_file(&done);
        return Err(integrity(IntegrityProblem::Sha256 {
            sha256: digest,
            size: hashing.count,
            listed_sha256: entry.sha256.clone(),
            listed_size: entry.size,
        }));
    }
    realms_sys::failpoint::hit("provision-verified");
    if part.exists() {
        let _ = realms_sys::atomic::rename(&part, &done);
    }
    if unpacked.is_err() {
        let _ = fs::remove_file(&done);
    }
    unpacked.map_err(|e| match e {
        Error::Integrity { file, reason, .. } => Error::Integrity {
            file,
            url: url.to_string(),
            reason,
        },
        other => other,
    })
}

/// Reads `hashing` to its end in chunks sent to the unpacker; returns it for its hash, with the
/// error that ended the transfer early, if one did (the unpacker may have stopped reading
/// before it came, so it is kept here too).
fn fetch_thread<R: Read>(
    mut hashing: Hashing<R>,
    tx: std::sync::mpsc::SyncSender<io::Result<Vec<u8>>>,
) -> (Hashing<R>, Option<io::Error>) {
    loop {
        let mut chunk = vec![0u8; 256 << 10];
        match hashing.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                // Killed here, the cache holds the part read so far.
                realms_sys::failpoint::hit("provision-fetched");
                chunk.truncate(n);
                if tx.send(Ok(chunk)).is_err() {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                let _ = tx.send(Err(io::Error::new(e.kind(), e.to_string())));
                return (hashing, Some(e));
            }
        }
    }
    (hashing, None)
}

/// The unpacker's side of [`fetch_thread`]; says how far it is.
struct Piped<'a> {
    rx: std::sync::mpsc::Receiver<io::Result<Vec<u8>>>,
    buf: Vec<u8>,
    pos: usize,
    seen: u64,
    what: &'a str,
    total: u64,
    progress: &'a mut dyn FnMut(Event),
}

impl Read for Piped<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.buf.len() {
            match self.rx.recv() {
                Ok(Ok(chunk)) => {
                    self.seen = self.seen.saturating_add(chunk.len() as u64);
                    (self.progress)(Event::transfer(self.what, self.seen, self.total));
                    self.buf = chunk;
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

fn unpack_one(
    r: &mut impl Read,
    entry: &Entry,
    ext: Ext,
    staging: &Path,
    limits: &Limits,
) -> Result<()> {
    if ext == Ext::Raw {
        let path = staging.join("image.raw");
        let mut f = fs::File::create(&path).ctx("creating", &path)?;
        io::copy(r, &mut f).ctx("writing", &path)?;
        return f.sync_all().map_err(|e| Error::io("syncing", &path, e));
    }
    let tree = staging.join("tree");
    fs::create_dir(&tree).ctx("creating", &tree)?;
    let mut dec = decoder(ext, r).map_err(|e| Error::Integrity {
        file: entry.file.clone(),
        url: String::new(),
        reason: IntegrityProblem::Decompress(e),
    })?;
    unpack_tar(&entry.file, &mut dec, &tree, limits)?;
    io::copy(&mut dec, &mut io::sink()).map_err(|e| Error::Integrity {
        file: entry.file.clone(),
        url: String::new(),
        reason: IntegrityProblem::Decompress(e),
    })?;
    Ok(())
}
