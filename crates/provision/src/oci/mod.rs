//! OCI registries as repositories: `oci://HOST[:PORT]/REPO[:TAG|@DIGEST]`, read and written
//! through the OCI distribution API (crate `oci-spec` for the manifest and descriptor types,
//! the project's blocking ureq client for the transport, so a package blob goes through the
//! same one-pass, Range-resumable install as an `https://` package).
//!
//! The layout (docs/repository.md): every package is an artifact as ORAS lays them out (an image
//! manifest with `artifactType` [`PACKAGE_TYPE`], the empty config, the package file as its one
//! layer), tagged `NAME_VERSION.ARCH`; the signed index of an architecture and stream is an
//! artifact too ([`INDEX_TYPE`], tagged `index.STREAM.ARCH`) whose two layers are the index file
//! and its signature. The index names each package file by its SHA-256, which is the layer's
//! digest: a machine fetches the blob by that digest.

mod client;
mod push;

use std::io::Read;
use std::path::Path;

use oci_spec::image::{Descriptor, ImageManifest, MediaType};
use sha2::{Digest as _, Sha256};

use crate::error::OciReferenceProblem;
use crate::fetch::Fetcher;
use crate::index::{Ext, MAX_INDEX_BYTES};
use crate::manifest::Stream;
use crate::{Error, IndexProblem, Result};

pub use client::{AUTH_FILE, Access, Client};
pub use push::publish;

/// The `artifactType` of a package.
pub const PACKAGE_TYPE: &str = "application/vnd.realms.provision.package.v1";
/// The `artifactType` of an index, and the media type of its index layer.
pub const INDEX_TYPE: &str = "application/vnd.realms.provision.index.v1+json";
/// The media type of the index's signature layer.
pub const SIG_TYPE: &str = "application/vnd.realms.provision.index.sig.v1";
/// The most a manifest may weigh.
pub const MAX_MANIFEST_BYTES: u64 = 1 << 20;
/// The most a signature may weigh.
pub const MAX_SIG_BYTES: u64 = 4096;

/// Whether `repo` is an `oci://` repository.
pub fn is_oci(repo: &str) -> bool {
    repo.starts_with("oci://")
}

/// A parsed `oci://HOST[:PORT]/REPO[:TAG|@DIGEST]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// `HOST[:PORT]`.
    pub registry: String,
    /// The repository path on it.
    pub repository: String,
    /// A tag naming the index (default: `index.STREAM.ARCH`).
    pub tag: Option<String>,
    /// A digest pinning the index manifest.
    pub digest: Option<String>,
}

impl Reference {
    /// Parses an `oci://` url.
    pub fn parse(url: &str) -> Result<Reference> {
        let bad = |reason: OciReferenceProblem| Error::OciReference {
            url: url.to_string(),
            reason,
        };
        let rest = url
            .strip_prefix("oci://")
            .ok_or_else(|| bad(OciReferenceProblem::NotOci))?
            .trim_end_matches('/');
        let (host, path) = rest
            .split_once('/')
            .ok_or_else(|| bad(OciReferenceProblem::NoRepository))?;
        let host_ok = !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
        if !host_ok {
            return Err(bad(OciReferenceProblem::BadRegistry));
        }
        // oci-spec checks the repository path, tag and digest; a registry name it knows stands
        // in for the host, which it would otherwise take for a path component without a dot.
        let parsed =
            oci_spec::distribution::Reference::try_from(format!("registry.invalid/{path}"))
                .map_err(|e| bad(OciReferenceProblem::Grammar(e.to_string())))?;
        let explicit_tag = path
            .rsplit('/')
            .next()
            .is_some_and(|last| last.contains(':'));
        Ok(Reference {
            registry: host.to_string(),
            repository: parsed.repository().to_string(),
            tag: parsed.tag().filter(|_| explicit_tag).map(str::to_string),
            digest: parsed.digest().map(str::to_string),
        })
    }

    /// `https://HOST[:PORT]/v2/REPO`.
    pub fn base(&self) -> String {
        format!("https://{}/v2/{}", self.registry, self.repository)
    }

    /// The manifest reference of the index of `arch` and `stream`: the url's digest or tag, or
    /// [`index_tag`].
    pub fn index_reference(&self, arch: &str, stream: Stream) -> String {
        self.digest
            .clone()
            .or_else(|| self.tag.clone())
            .unwrap_or_else(|| index_tag(arch, stream))
    }
}

/// The tag of the index of `arch` and `stream`: `index.STREAM.ARCH`.
pub fn index_tag(arch: &str, stream: Stream) -> String {
    format!("index.{stream}.{arch}")
}

/// The tag of a package artifact: `NAME_VERSION.ARCH`, with the characters a tag cannot hold
/// (`+`, `~`, `^`) as `-`, at most 128 characters. Machines never read it (the index names the
/// blob by digest); it names the artifact for people and keeps it from garbage collection.
pub fn package_tag(name: &str, version: &str, arch: &str) -> String {
    let mut tag: String = format!("{name}_{version}.{arch}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    tag.truncate(128);
    tag
}

/// The media type of a package layer.
pub fn layer_type(ext: Ext) -> &'static str {
    match ext {
        Ext::Tar => "application/vnd.realms.provision.package.v1.tar",
        Ext::TarGz => "application/vnd.realms.provision.package.v1.tar+gzip",
        Ext::TarZst => "application/vnd.realms.provision.package.v1.tar+zstd",
        Ext::TarXz => "application/vnd.realms.provision.package.v1.tar+xz",
        Ext::Raw => "application/vnd.realms.provision.package.v1.raw",
    }
}

/// The url of the blob with SHA-256 `sha256` in repository `repo` (for messages and fetches).
pub fn blob_url(repo: &str, sha256: &str) -> Result<String> {
    Ok(format!(
        "{}/blobs/sha256:{sha256}",
        Reference::parse(repo)?.base()
    ))
}

/// The hex SHA-256 of `bytes`.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Parses a manifest fetched from `url`.
pub(crate) fn parse_manifest(url: &str, bytes: &[u8]) -> Result<ImageManifest> {
    ImageManifest::from_reader(bytes).map_err(|e| Error::BadIndex {
        url: url.to_string(),
        reason: IndexProblem::NotAManifest(e.to_string()),
    })
}

/// The one layer of `manifest` with media type `media`.
fn layer<'m>(url: &str, manifest: &'m ImageManifest, media: &str) -> Result<&'m Descriptor> {
    let found: Vec<&Descriptor> = manifest
        .layers()
        .iter()
        .filter(|d| d.media_type().to_string() == media)
        .collect();
    match found[..] {
        [one] => Ok(one),
        _ => Err(Error::BadIndex {
            url: url.to_string(),
            reason: IndexProblem::Layers {
                count: found.len(),
                media: media.to_string(),
            },
        }),
    }
}

/// An index file and its signature file, when it has one.
pub type SignedIndex = (Vec<u8>, Option<Vec<u8>>);

/// The index file and its signature (when there is one) of `repo` for `arch` and `stream`,
/// each checked against its digest in the index artifact; `None` when there is no index.
pub fn fetch_index(
    root: &Path,
    fetcher: &Fetcher,
    repo: &str,
    arch: &str,
    stream: Stream,
) -> Result<Option<SignedIndex>> {
    let r = Reference::parse(repo)?;
    let client = Client::connect(root, fetcher, &r, Access::Pull)?;
    let reference = r.index_reference(arch, stream);
    let url = format!("{}/manifests/{reference}", r.base());
    let Some(bytes) = client.manifest(&reference)? else {
        return Ok(None);
    };
    if let Some(digest) = &r.digest
        && format!("sha256:{}", sha256_hex(&bytes)) != *digest
    {
        return Err(Error::BadIndex {
            url,
            reason: IndexProblem::Digest {
                digest: digest.clone(),
            },
        });
    }
    let manifest = parse_manifest(&url, &bytes)?;
    let kind = manifest.artifact_type().as_ref().map(MediaType::to_string);
    if kind.as_deref() != Some(INDEX_TYPE) {
        return Err(Error::BadIndex {
            url,
            reason: IndexProblem::ArtifactType {
                found: kind,
                expected: INDEX_TYPE,
            },
        });
    }
    let index = client.blob(layer(&url, &manifest, INDEX_TYPE)?, MAX_INDEX_BYTES)?;
    let sig = match layer(&url, &manifest, SIG_TYPE) {
        Ok(d) => Some(client.blob(d, MAX_SIG_BYTES)?),
        Err(_) => None,
    };
    Ok(Some((index, sig)))
}

/// The bytes of the package blob `sha256` of `repo` from `offset` on (the install hashes them
/// all against the index, which is the blob's digest); `None` when the registry lacks it.
pub fn open_blob(
    root: &Path,
    fetcher: &Fetcher,
    repo: &str,
    sha256: &str,
    offset: u64,
) -> Result<Option<Box<dyn Read + Send>>> {
    let r = Reference::parse(repo)?;
    let client = Client::connect(root, fetcher, &r, Access::Pull)?;
    let url = blob_url(repo, sha256)?;
    fetcher.open_authorized(&url, offset, client.authorization().as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_parse_with_port_tag_and_digest() {
        let r = Reference::parse("oci://127.0.0.1:5000/fleet/portables").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str()),
            ("127.0.0.1:5000", "fleet/portables")
        );
        assert_eq!((&r.tag, &r.digest), (&None, &None));
        assert_eq!(r.base(), "https://127.0.0.1:5000/v2/fleet/portables");
        let r = Reference::parse("oci://reg.example/p:pinned").unwrap();
        assert_eq!(r.tag.as_deref(), Some("pinned"));
        assert_eq!(r.index_reference("amd64", Stream::Stable), "pinned");
        let d = format!("sha256:{}", "a".repeat(64));
        let r = Reference::parse(&format!("oci://localhost:5000/p@{d}")).unwrap();
        assert_eq!(r.digest.as_deref(), Some(d.as_str()));
        let r = Reference::parse("oci://myreg/p/q").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str()),
            ("myreg", "p/q")
        );
        assert_eq!(r.index_reference("arm64", Stream::Next), "index.next.arm64");
        for bad in [
            "oci://host",
            "oci:///repo",
            "oci://h/UPPER",
            "oci://h/p@sha256:12",
            "oci://h o/p",
            "https://h/p",
        ] {
            let e = Reference::parse(bad).unwrap_err();
            assert!(matches!(e, Error::OciReference { .. }), "{bad}: {e}");
            assert!(e.to_string().contains(bad), "{e}");
        }
    }

    #[test]
    fn package_tags_hold_only_what_a_tag_may() {
        assert_eq!(package_tag("foo", "1.0", "amd64"), "foo_1.0.amd64");
        assert_eq!(package_tag("g+", "1~rc^2", "arm64"), "g-_1-rc-2.arm64");
        assert!(package_tag(&"n".repeat(200), "1", "amd64").len() <= 128);
    }
}
