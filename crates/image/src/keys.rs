//! Signing keys for sealed images: ed25519 key pairs, the trusted public keys under
//! `/etc/realms/keys.d/` and `/usr/lib/realms/keys.d/`, and signing and checking signatures.

use realms_sys::IoContext;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use realms_sys::untrusted;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::{Error, KeyProblem, Result, SignatureProblem, validate_name};

const PRIVATE_HEADER: &str = "realms-ed25519-private-key v1";
const PUBLIC_HEADER: &str = "realms-ed25519-public-key v1";

/// Where trusted public keys live, most important first (a name in /etc hides the same name
/// in /usr/lib).
pub const TRUST_DIRS: &[&str] = &["etc/realms/keys.d", "usr/lib/realms/keys.d"];
/// Where `realms appimg key generate` keeps private keys.
pub const PRIVATE_DIR: &str = "etc/realms/private";

/// A trusted public key.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct TrustedKey {
    /// The key file's name without `.pub`.
    pub name: String,
    /// The first 16 bytes of the SHA-256 of the key, in hex.
    pub fingerprint: String,
    /// The key file.
    pub path: PathBuf,
    #[serde(skip)]
    key: VerifyingKey,
}

/// The fingerprint of a public key.
pub fn fingerprint(key: &VerifyingKey) -> String {
    hex::encode(&Sha256::digest(key.as_bytes())[..16])
}

/// `realms appimg key generate NAME`: a new key pair; the private key (mode 0600) under
/// `/etc/realms/private/`, the public key trusted under `/etc/realms/keys.d/`.
///
/// Safe to kill at any point: the public key is staged first as `keys.d/.NAME.pub.pending`
/// (not trusted: not a `.pub`), then the private key is created whole or not at all (the
/// commit), then the pending file is renamed into trust. [`finish_interrupted`] completes a
/// pair whose private key exists and discards one whose private key never got there.
pub fn generate(root: &Path, name: &str) -> Result<(PathBuf, TrustedKey)> {
    validate_name("key", name)?;
    finish_interrupted(root);
    let private_dir = root.join(PRIVATE_DIR);
    let public_dir = root.join(TRUST_DIRS[0]);
    let private = private_dir.join(format!("{name}.key"));
    let public = public_dir.join(format!("{name}.pub"));
    for p in [&private, &public] {
        if p.exists() {
            return Err(Error::Key {
                path: p.clone(),
                problem: KeyProblem::Exists,
            });
        }
    }
    for (dir, mode) in [(&private_dir, 0o700), (&public_dir, 0o755)] {
        fs::create_dir_all(dir).ctx("creating", dir.as_path())?;
        fs::set_permissions(dir, fs::Permissions::from_mode(mode))
            .ctx("setting the mode of", dir.as_path())?;
    }
    let seed = realms_sys::random::bytes::<32>()?;
    let signing = SigningKey::from_bytes(&seed);
    let pending = pending_path(&public_dir, name);
    realms_sys::atomic::write_file(&pending, public_text(&signing).as_bytes(), 0o644)?;
    let private_text = format!("{PRIVATE_HEADER}\n{}\n", hex::encode(seed));
    realms_sys::atomic::write_new(&private, private_text.as_bytes(), 0o600)?;
    realms_sys::atomic::rename_noreplace(&pending, &public)?;
    let key = load_public(name, &public)?;
    Ok((private, key))
}

fn public_text(signing: &SigningKey) -> String {
    format!(
        "{PUBLIC_HEADER}\n{}\n",
        hex::encode(signing.verifying_key().as_bytes())
    )
}

/// The staged public key of a `generate` under way.
fn pending_path(public_dir: &Path, name: &str) -> PathBuf {
    public_dir.join(format!(".{name}.pub.pending"))
}

/// Completes or discards key pairs whose `generate` was interrupted: a pending public key whose
/// private key was created (and matches it) is put into trust, any other is removed, with the
/// temporary files of the private keys never created. Called by `generate` and under the store
/// lock by every mutating command.
pub fn finish_interrupted(root: &Path) {
    let public_dir = root.join(TRUST_DIRS[0]);
    let private_dir = root.join(PRIVATE_DIR);
    for entry in fs::read_dir(&private_dir).into_iter().flatten().flatten() {
        if realms_sys::atomic::is_temp_name(&entry.file_name()) {
            let _ = fs::remove_file(entry.path());
        }
    }
    for entry in fs::read_dir(&public_dir).into_iter().flatten().flatten() {
        let file = entry.file_name();
        if realms_sys::atomic::is_temp_name(&file) {
            let _ = fs::remove_file(entry.path());
            continue;
        }
        let Some(name) = file
            .to_str()
            .and_then(|n| n.strip_prefix('.')?.strip_suffix(".pub.pending"))
        else {
            continue;
        };
        let public = public_dir.join(format!("{name}.pub"));
        let matches = load_private(&private_dir.join(format!("{name}.key")))
            .ok()
            .zip(fs::read_to_string(entry.path()).ok())
            .is_some_and(|(signing, staged)| staged == public_text(&signing));
        if matches && !public.exists() {
            let _ = realms_sys::atomic::rename_noreplace(entry.path(), &public);
        } else {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// The private key file `spec` names: a key of the key store by name (`me` is
/// `/etc/realms/private/me.key` under `root`, as `realms appimg key list` shows them), or else
/// a path on the host (anything with a `/`, or an existing file).
pub fn resolve_private(root: &Path, spec: &Path) -> Result<PathBuf> {
    let text = spec.to_string_lossy();
    if text.contains('/') {
        return Ok(spec.to_path_buf());
    }
    let stored = root.join(PRIVATE_DIR).join(format!("{text}.key"));
    if validate_name("key", &text).is_ok() && stored.exists() {
        return Ok(stored);
    }
    if spec.is_file() {
        return Ok(spec.to_path_buf());
    }
    Err(Error::NoSuchKey {
        name: text.into_owned(),
        path: stored,
    })
}

/// Reads a private key file written by `realms appimg key generate`.
pub fn load_private(path: &Path) -> Result<SigningKey> {
    Ok(SigningKey::from_bytes(&read_key_file(
        path,
        "private",
        PRIVATE_HEADER,
    )?))
}

/// The 32 key bytes of a key file: a header line, then the key in hex.
fn read_key_file(path: &Path, kind: &str, header: &str) -> Result<[u8; 32]> {
    let bad = |problem: KeyProblem| Error::Key {
        path: path.to_path_buf(),
        problem,
    };
    let text = String::from_utf8(untrusted::read_following(path, 64 << 10)?)
        .map_err(|_| bad(KeyProblem::NotUtf8))?;
    let mut lines = text.lines();
    if lines.next() != Some(header) {
        return Err(bad(KeyProblem::Header {
            kind: kind.to_string(),
            header: header.to_string(),
        }));
    }
    lines
        .next()
        .and_then(|l| hex::decode(l.trim()).ok())
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| bad(KeyProblem::NotHex))
}

/// Reads the public key file `path` as key `name` (checked: a realms public key, a valid ed25519 point).
pub fn load_public(name: &str, path: &Path) -> Result<TrustedKey> {
    let bytes = read_key_file(path, "public", PUBLIC_HEADER)?;
    let key = VerifyingKey::from_bytes(&bytes).map_err(|_| Error::Key {
        path: path.to_path_buf(),
        problem: KeyProblem::NotEd25519,
    })?;
    Ok(TrustedKey {
        name: name.to_string(),
        fingerprint: fingerprint(&key),
        path: path.to_path_buf(),
        key,
    })
}

/// Every trusted key under `root`, by name (/etc first). A key file that cannot be read or
/// parsed is skipped with a warning naming it: one junk file must not make every sealed image
/// fail to verify.
pub fn trusted(root: &Path) -> Result<Vec<TrustedKey>> {
    let mut keys: Vec<TrustedKey> = Vec::new();
    for dir in TRUST_DIRS {
        let dir = root.join(dir);
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        let mut found: Vec<_> = entries.flatten().map(|e| e.path()).collect();
        found.sort();
        for path in found {
            let Some(name) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".pub"))
            else {
                continue;
            };
            if !keys.iter().any(|k| k.name == name) {
                match load_public(name, &path) {
                    Ok(key) => keys.push(key),
                    Err(e) => tracing::warn!("skipping the trusted key {}: {e}", path.display()),
                }
            }
        }
    }
    Ok(keys)
}

/// The domain-separated message a signature covers.
fn message(payload: &[u8]) -> Vec<u8> {
    let mut m = b"realms-appimg-signature v1\n".to_vec();
    m.extend_from_slice(payload);
    m
}

/// Signs `payload`; returns the signature file's text.
pub fn sign(key: &SigningKey, payload: &[u8]) -> String {
    let sig = key.sign(&message(payload));
    format!(
        "key = \"{}\"\nsignature = \"{}\"\n",
        fingerprint(&key.verifying_key()),
        hex::encode(sig.to_bytes())
    )
}

/// What a good signature was made with.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct GoodSignature {
    /// The name of the trusted key.
    pub key: String,
    /// Its fingerprint.
    pub fingerprint: String,
}

/// Checks a signature file's text over `payload` against the trusted keys.
pub fn check(
    image: &str,
    sig_path: &Path,
    payload: &[u8],
    keys: &[TrustedKey],
) -> Result<GoodSignature> {
    let bytes = untrusted::read(sig_path, untrusted::TEXT_CAP).map_err(|e| {
        if e.is_not_found() {
            Error::Unsigned {
                name: image.to_string(),
            }
        } else {
            Error::Sys(e)
        }
    })?;
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct SigFile {
        key: String,
        signature: String,
    }
    let bad = |reason: SignatureProblem| Error::BadSignature {
        name: image.to_string(),
        reason,
    };
    let text = String::from_utf8(bytes).map_err(|_| {
        bad(SignatureProblem::NotUtf8 {
            path: sig_path.to_path_buf(),
        })
    })?;
    let parsed: SigFile = toml::from_str(&text).map_err(|e| {
        bad(SignatureProblem::Malformed {
            path: sig_path.to_path_buf(),
            message: e.message().to_string(),
        })
    })?;
    // Only the exact form `sign` writes is accepted, so no byte of the file can change unnoticed.
    if text
        != format!(
            "key = \"{}\"\nsignature = \"{}\"\n",
            parsed.key, parsed.signature
        )
    {
        return Err(bad(SignatureProblem::NotCanonical {
            path: sig_path.to_path_buf(),
        }));
    }
    let Some(key) = keys.iter().find(|k| k.fingerprint == parsed.key) else {
        return Err(Error::Untrusted {
            name: image.to_string(),
            fingerprint: parsed.key,
        });
    };
    let lowercase_hex = parsed
        .signature
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    let bytes: [u8; 64] = lowercase_hex
        .then(|| hex::decode(&parsed.signature).ok())
        .flatten()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| {
            bad(SignatureProblem::NoSignature {
                path: sig_path.to_path_buf(),
            })
        })?;
    key.key
        .verify_strict(&message(payload), &Signature::from_bytes(&bytes))
        .map_err(|_| {
            bad(SignatureProblem::Mismatch {
                key: key.name.clone(),
            })
        })?;
    Ok(GoodSignature {
        key: key.name.clone(),
        fingerprint: key.fingerprint.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_private_key_is_found_by_name_or_path() {
        let root = tempfile::tempdir().unwrap();
        let (private, _) = generate(root.path(), "me").unwrap();
        assert_eq!(
            resolve_private(root.path(), Path::new("me")).unwrap(),
            private
        );
        assert_eq!(resolve_private(root.path(), &private).unwrap(), private);
        let err = resolve_private(root.path(), Path::new("nobody"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("'nobody'") && err.contains("key list"),
            "{err}"
        );
    }

    #[test]
    fn one_malformed_pub_in_keys_d_makes_every_sealed_image_fail_to_verify() {
        let root = tempfile::tempdir().unwrap();
        let (_, key) = generate(root.path(), "builder").unwrap();
        let dir = root.path().join(TRUST_DIRS[0]);
        fs::write(dir.join("aaa-junk.pub"), "not a key\n").unwrap();
        let fifo = dir.join("fifo.pub");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let keys = trusted(root.path()).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].fingerprint, key.fingerprint);
    }

    /// Regression: the private key was written in place (`create_new`), so a kill left a
    /// truncated key that the next `generate` refused as existing, or a private key whose
    /// public half was never trusted.
    #[test]
    fn regression_an_interrupted_generate_is_completed_or_discarded_never_half_made() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let (private, _) = generate(root, "done").unwrap();
        let public_dir = root.join(TRUST_DIRS[0]);
        // Killed after the commit: the private key is there, its public half still pending.
        let signing = load_private(&private).unwrap();
        fs::rename(
            public_dir.join("done.pub"),
            pending_path(&public_dir, "done"),
        )
        .unwrap();
        // Killed before it: a pending public key and a temporary private key only.
        fs::write(pending_path(&public_dir, "lost"), public_text(&signing)).unwrap();
        let tmp_private = root.join(PRIVATE_DIR).join(".#lost.key.0123456789");
        fs::write(&tmp_private, "partial").unwrap();
        // A pending key that does not match its private key is not trusted either.
        fs::write(pending_path(&public_dir, "odd"), "not the key\n").unwrap();
        fs::write(
            root.join(PRIVATE_DIR).join("odd.key"),
            fs::read(&private).unwrap(),
        )
        .unwrap();

        finish_interrupted(root);
        let names = |d: &Path| -> Vec<String> {
            let mut v: Vec<String> = fs::read_dir(d)
                .unwrap()
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        };
        assert_eq!(names(&public_dir), ["done.pub"]);
        assert_eq!(names(&root.join(PRIVATE_DIR)), ["done.key", "odd.key"]);
        let trusted = trusted(root).unwrap();
        assert_eq!(trusted.len(), 1);
        assert_eq!(
            trusted[0].fingerprint,
            fingerprint(&signing.verifying_key())
        );
        // The discarded name can be generated again.
        generate(root, "lost").unwrap();
    }

    #[test]
    fn generate_sign_check() {
        let root = tempfile::tempdir().unwrap();
        let (private, key) = generate(root.path(), "builder").unwrap();
        assert_eq!(
            fs::metadata(&private).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let keys = trusted(root.path()).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].fingerprint, key.fingerprint);
        let signing = load_private(&private).unwrap();
        let sig = root.path().join("image.sig");
        fs::write(&sig, sign(&signing, b"payload")).unwrap();
        assert_eq!(
            check("img", &sig, b"payload", &keys).unwrap().key,
            "builder"
        );
        let err = check("img", &sig, b"payload!", &keys)
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not match"), "{err}");
        let err = check("img", &sig, b"payload", &[]).unwrap_err().to_string();
        assert!(
            err.contains("not trusted") && err.contains(&key.fingerprint),
            "{err}"
        );
        assert!(matches!(
            check("img", &root.path().join("none"), b"", &keys),
            Err(Error::Unsigned { .. })
        ));
        assert!(
            generate(root.path(), "builder").is_err(),
            "keys are never overwritten"
        );
    }
}
