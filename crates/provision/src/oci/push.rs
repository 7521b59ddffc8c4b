//! `realms provision publish --to oci://...`: each package pushed as an artifact (its file as
//! the one layer, skipped when the registry has the blob), then the index updated, signed and
//! pushed as an artifact whose manifest is put last, in one request: a reader of the index tag
//! sees the old index and its signature or the new ones, never a mix.

use realms_sys::IoContext;
use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;
use oci_spec::image::{Descriptor, ImageManifest, ImageManifestBuilder, MediaType};

use super::client::{Access, Client, Upload};
use super::{INDEX_TYPE, PACKAGE_TYPE, Reference, SIG_TYPE, layer_type, package_tag, sha256_hex};
use crate::fetch::Fetcher;
use crate::index::{self, Entry, Ext, Index};
use crate::publish::{Publish, Published, entry_of};
use crate::{Error, PushProblem, Result};

/// The empty config of artifacts (`application/vnd.oci.empty.v1+json`).
const EMPTY: &[u8] = b"{}";
/// The annotation naming a layer's file, as ORAS writes it.
const TITLE: &str = "org.opencontainers.image.title";

fn descriptor(
    media: MediaType,
    bytes_sha256: &str,
    size: u64,
    title: Option<&str>,
) -> Result<Descriptor> {
    let digest: oci_spec::image::Digest =
        format!("sha256:{bytes_sha256}")
            .parse()
            .map_err(|e: oci_spec::OciSpecError| Error::Push {
                url: format!("sha256:{bytes_sha256}"),
                reason: PushProblem::Digest(e.to_string()),
            })?;
    let mut d = Descriptor::new(media, size, digest);
    if let Some(t) = title {
        d.set_annotations(Some(HashMap::from([(TITLE.to_string(), t.to_string())])));
    }
    Ok(d)
}

fn artifact(kind: &str, layers: Vec<Descriptor>, url: &str) -> Result<Vec<u8>> {
    let config = descriptor(
        MediaType::EmptyJSON,
        &sha256_hex(EMPTY),
        EMPTY.len() as u64,
        None,
    )?;
    let manifest: ImageManifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .artifact_type(MediaType::Other(kind.to_string()))
        .config(config)
        .layers(layers)
        .build()
        .map_err(|e| Error::Push {
            url: url.to_string(),
            reason: PushProblem::BuildManifest(e.to_string()),
        })?;
    serde_json::to_vec(&manifest).map_err(|e| Error::Push {
        url: url.to_string(),
        reason: PushProblem::SerializeManifest(e),
    })
}

fn push_bytes(client: &Client<'_>, bytes: &[u8]) -> Result<String> {
    let sha = sha256_hex(bytes);
    let digest = format!("sha256:{sha}");
    if !client.has_blob(&digest)? {
        client.upload(&digest, Upload::Bytes(bytes))?;
    }
    Ok(sha)
}

/// The current index behind `tag`, if any (read without a signature check: the publisher
/// holds the key, and the new index is signed anew).
fn current(client: &Client<'_>, r: &Reference, tag: &str) -> Result<Option<Index>> {
    let url = format!("{}/manifests/{tag}", r.base());
    let Some(bytes) = client.manifest(tag)? else {
        return Ok(None);
    };
    let manifest = super::parse_manifest(&url, &bytes)?;
    let layer = super::layer(&url, &manifest, INDEX_TYPE)?;
    let index = client.blob(layer, index::MAX_INDEX_BYTES)?;
    index::parse(&url, &index).map(Some)
}

/// Pushes `packages` to the registry repository `req.repo` (`oci://...`) and updates its index
/// of `req.arch` and `req.stream`, signed with `key`. Credentials as for pulls (`root`'s
/// /etc/realms/auth.json, then the docker config); `fetcher` carries the trust store.
pub fn publish(
    root: &Path,
    fetcher: &Fetcher,
    req: &Publish<'_>,
    packages: &[PathBuf],
    key: &SigningKey,
) -> Result<Published> {
    let r = Reference::parse(req.repo)?;
    if r.digest.is_some() {
        return Err(Error::OciReference {
            url: req.repo.to_string(),
            reason: crate::error::OciReferenceProblem::PublishToDigest,
        });
    }
    let client = Client::connect(root, fetcher, &r, Access::Push)?;
    let tag = r.index_reference(req.arch, req.stream);
    let index_url = format!("{}/manifests/{tag}", r.base());
    let mut idx = current(&client, &r, &tag)?.unwrap_or_else(|| Index::empty(req.arch, req.stream));
    push_bytes(&client, EMPTY)?;
    let mut added = Vec::new();
    for p in packages {
        let (name, entry) = entry_of(p)?;
        push_package(&client, &r, req.arch, p, &name, &entry)?;
        added.push(entry.file.clone());
        idx.add(name, entry);
    }
    idx.stamp(req.serial, index::now(), req.valid_for, &index_url)?;
    let bytes = serde_json::to_vec_pretty(&idx).map_err(|source| Error::SerializeIndex {
        path: PathBuf::from(&index_url),
        source,
    })?;
    let sig = index::sign(key, &bytes);
    let index_sha = push_bytes(&client, &bytes)?;
    let sig_sha = push_bytes(&client, sig.as_bytes())?;
    let layers = vec![
        descriptor(
            MediaType::Other(INDEX_TYPE.into()),
            &index_sha,
            bytes.len() as u64,
            Some(&index::index_name(req.stream)),
        )?,
        descriptor(
            MediaType::Other(SIG_TYPE.into()),
            &sig_sha,
            sig.len() as u64,
            Some(&index::sig_name(req.stream, idx.serial)),
        )?,
    ];
    let manifest = artifact(INDEX_TYPE, layers, &index_url)?;
    client.put_manifest(&tag, &manifest)?;
    Ok(Published {
        index: PathBuf::from(format!("oci://{}/{}:{tag}", r.registry, r.repository)),
        serial: idx.serial,
        expires: idx.expires,
        added,
    })
}

/// Pushes one package artifact (tag [`package_tag`]); a tag holding other bytes is refused:
/// packages never change.
fn push_package(
    client: &Client<'_>,
    r: &Reference,
    arch: &str,
    path: &Path,
    name: &str,
    entry: &Entry,
) -> Result<()> {
    let tag = package_tag(name, &entry.version, arch);
    let url = format!("{}/manifests/{tag}", r.base());
    let digest = format!("sha256:{}", entry.sha256);
    if let Some(bytes) = client.manifest(&tag)? {
        let old = super::parse_manifest(&url, &bytes)?;
        if old
            .layers()
            .iter()
            .any(|l| l.digest().to_string() == digest)
        {
            return Ok(());
        }
        return Err(Error::PackageChanged {
            path: PathBuf::from(format!("oci://{}/{}:{tag}", r.registry, r.repository)),
        });
    }
    if !client.has_blob(&digest)? {
        let f = fs::File::open(path).ctx("reading", path)?;
        client.upload(&digest, Upload::File(&f))?;
    }
    let ext = Ext::of(&entry.file, name, &entry.version).unwrap_or(Ext::Tar);
    let layer = descriptor(
        MediaType::Other(layer_type(ext).into()),
        &entry.sha256,
        entry.size,
        Some(&entry.file),
    )?;
    let manifest = artifact(PACKAGE_TYPE, vec![layer], &url)?;
    client.put_manifest(&tag, &manifest)
}
