//! Root hash signatures: a detached PKCS#7 (DER) whose content is the root hash in lowercase hex
//! digits, no newline, as `veritysetup --root-hash-signature` hands it to the kernel and systemd
//! keeps it in `.roothash.p7s` (made with `openssl smime -sign -binary -noattr -outform DER`).
//!
//! The kernel trusts a signature whose signer's key is in its keyring; here the keyring is a
//! directory of X.509 certificates (PEM, one or more per file, or DER). As in the kernel, the
//! signer must be one of those certificates itself (certificates inside the signature are not
//! trusted, no chain is built, validity dates are not checked).

use std::io;
use std::path::{Path, PathBuf};

use openssl::error::ErrorStack;
use openssl::pkcs7::{Pkcs7, Pkcs7Flags};
use openssl::stack::Stack;
use openssl::x509::X509;
use openssl::x509::store::X509StoreBuilder;

/// Where `realms verity verify --root-hash-signature` looks for trusted certificates by default.
pub const DEFAULT_KEYRING: &str = "/etc/realms/verity-certs.d";

/// A signature file is at most this big (the kernel takes a page or two; 1 MiB is generous).
const MAX_SIGNATURE: u64 = 1 << 20;
/// A certificate file is at most this big.
const MAX_CERTIFICATE: u64 = 1 << 20;

/// Why a root hash signature was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    /// The keyring directory could not be listed.
    #[error("reading the keyring {dir}")]
    ReadKeyring {
        /// The keyring directory.
        dir: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A file of the keyring could not be read.
    #[error("reading the certificate {file}")]
    ReadCertificate {
        /// The certificate file.
        file: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A file of the keyring is no X.509 certificate.
    #[error("{file} is not an X.509 certificate (PEM or DER)")]
    BadCertificate {
        /// The certificate file.
        file: PathBuf,
        /// OpenSSL's reasons.
        #[source]
        source: ErrorStack,
    },
    /// The keyring holds no certificate, so nothing can be trusted.
    #[error("the keyring {dir} holds no certificates (*.pem, *.crt, *.cer, *.der)")]
    EmptyKeyring {
        /// The keyring directory.
        dir: PathBuf,
    },
    /// The signature file could not be read.
    #[error("reading the root hash signature {file}")]
    ReadSignature {
        /// The signature file.
        file: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The signature file is no PKCS#7 structure.
    #[error("{file} is not a PKCS#7 signature in DER")]
    BadSignature {
        /// The signature file.
        file: PathBuf,
        /// OpenSSL's reasons.
        #[source]
        source: ErrorStack,
    },
    /// The signature is not over this root hash, or not by a key of the keyring.
    #[error(
        "the signature {file} is not a valid signature of root hash {root_hash} by a certificate of {keyring} ({reason})"
    )]
    NotTrusted {
        /// The signature file.
        file: PathBuf,
        /// The root hash, hex.
        root_hash: String,
        /// The keyring directory.
        keyring: PathBuf,
        /// OpenSSL's innermost reason (`bad signature`, `signer certificate not found`).
        reason: String,
    },
}

/// Who signed a root hash that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signer {
    /// The signer certificate's subject, one-line (`CN=...`).
    pub subject: String,
    /// The keyring file the certificate came from.
    pub certificate: PathBuf,
}

/// Checks that `signature` (a file holding a detached PKCS#7 in DER) signs the hex of
/// `root_hash` with the key of a certificate in the directory `keyring`; returns that signer.
pub fn verify_root_hash_signature(
    root_hash: &[u8],
    signature: &Path,
    keyring: &Path,
) -> Result<Signer, SignatureError> {
    let certs = read_keyring(keyring)?;
    let der =
        read_capped(signature, MAX_SIGNATURE).map_err(|source| SignatureError::ReadSignature {
            file: signature.to_owned(),
            source,
        })?;
    let bad = |source| SignatureError::BadSignature {
        file: signature.to_owned(),
        source,
    };
    let pkcs7 = Pkcs7::from_der(&der).map_err(bad)?;
    let root_hex = hex::encode(root_hash);
    let untrusted = |stack: ErrorStack| SignatureError::NotTrusted {
        file: signature.to_owned(),
        root_hash: root_hex.clone(),
        keyring: keyring.to_owned(),
        reason: stack
            .errors()
            .first()
            .and_then(|e| e.reason())
            .unwrap_or("no reason given")
            .to_owned(),
    };
    let mut stack = Stack::new().map_err(untrusted)?;
    for (_, cert) in &certs {
        stack.push(cert.clone()).map_err(untrusted)?;
    }
    // Only the keyring's certificates can be the signer (NOINTERN), and they are trusted as
    // they are (NOVERIFY: no chain to a CA), like keys in the kernel's keyring.
    let flags = Pkcs7Flags::NOINTERN | Pkcs7Flags::NOVERIFY | Pkcs7Flags::BINARY;
    let store = X509StoreBuilder::new().map_err(untrusted)?.build();
    pkcs7
        .verify(&stack, &store, Some(root_hex.as_bytes()), None, flags)
        .map_err(untrusted)?;
    let signers = pkcs7.signers(&stack, flags).map_err(untrusted)?;
    let signer = signers.iter().next();
    let (certificate, subject) = certs
        .iter()
        .find(|(_, cert)| signer.is_some_and(|s| s.to_der().ok() == cert.to_der().ok()))
        .map(|(file, cert)| (file.clone(), subject_line(cert)))
        .unwrap_or_else(|| (keyring.to_owned(), String::new()));
    Ok(Signer {
        subject,
        certificate,
    })
}

/// `CN=name, O=org` from a certificate's subject.
fn subject_line(cert: &X509) -> String {
    cert.subject_name()
        .entries()
        .map(|e| {
            let key = e.object().nid().short_name().unwrap_or("?");
            let value = e.data().to_string().unwrap_or_default();
            format!("{key}={value}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Every certificate of the keyring directory, with the file it came from, in name order.
fn read_keyring(dir: &Path) -> Result<Vec<(PathBuf, X509)>, SignatureError> {
    let listing = |source| SignatureError::ReadKeyring {
        dir: dir.to_owned(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(listing)? {
        let path = entry.map_err(listing)?.path();
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        if ["pem", "crt", "cer", "der"].contains(&ext) {
            files.push(path);
        }
    }
    files.sort();
    let mut certs = Vec::new();
    for file in files {
        let bytes = read_capped(&file, MAX_CERTIFICATE).map_err(|source| {
            SignatureError::ReadCertificate {
                file: file.clone(),
                source,
            }
        })?;
        let parsed = if bytes.windows(10).any(|w| w == b"-----BEGIN") {
            X509::stack_from_pem(&bytes)
        } else {
            X509::from_der(&bytes).map(|c| vec![c])
        };
        let parsed = parsed.map_err(|source| SignatureError::BadCertificate {
            file: file.clone(),
            source,
        })?;
        certs.extend(parsed.into_iter().map(|c| (file.clone(), c)));
    }
    if certs.is_empty() {
        return Err(SignatureError::EmptyKeyring {
            dir: dir.to_owned(),
        });
    }
    Ok(certs)
}

/// The file's bytes, refusing files larger than `cap`.
fn read_capped(path: &Path, cap: u64) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(cap + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > cap {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than {cap} bytes"),
        ));
    }
    Ok(bytes)
}
