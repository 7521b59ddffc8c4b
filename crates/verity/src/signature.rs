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

use cms::cert::IssuerAndSerialNumber;
use cms::content_info::ContentInfo;
use cms::signed_data::{SignedData, SignerIdentifier, SignerInfo};
use der::asn1::{ObjectIdentifier, OctetString};
use der::{Decode, Encode};
use ring::signature::{self as sig, VerificationAlgorithm};
use x509_cert::Certificate;
use x509_cert::ext::pkix::SubjectKeyIdentifier;

/// Where `realms verity verify --root-hash-signature` looks for trusted certificates by default.
pub const DEFAULT_KEYRING: &str = "/etc/realms/verity-certs.d";

/// A signature file is at most this big (the kernel takes a page or two; 1 MiB is generous).
const MAX_SIGNATURE: u64 = 1 << 20;
/// A certificate file is at most this big.
const MAX_CERTIFICATE: u64 = 1 << 20;

/// The object identifiers a root hash signature uses (RFC 5652, RFC 3279, RFC 4055, RFC 5480).
mod oid {
    use der::asn1::ObjectIdentifier as Oid;

    pub const SIGNED_DATA: Oid = Oid::new_unwrap("1.2.840.113549.1.7.2");
    pub const DATA: Oid = Oid::new_unwrap("1.2.840.113549.1.7.1");
    pub const CONTENT_TYPE: Oid = Oid::new_unwrap("1.2.840.113549.1.9.3");
    pub const MESSAGE_DIGEST: Oid = Oid::new_unwrap("1.2.840.113549.1.9.4");
    pub const SHA256: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.2.1");
    pub const SHA384: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.2.2");
    pub const SHA512: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.2.3");
    pub const RSA: Oid = Oid::new_unwrap("1.2.840.113549.1.1.1");
    pub const EC: Oid = Oid::new_unwrap("1.2.840.10045.2.1");
    pub const P256: Oid = Oid::new_unwrap("1.2.840.10045.3.1.7");
    pub const P384: Oid = Oid::new_unwrap("1.3.132.0.34");
}

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
        /// What the decoder found.
        #[source]
        source: der::Error,
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
        /// What the decoder found.
        #[source]
        source: der::Error,
    },
    /// The signature file is PKCS#7 but not a detached SignedData.
    #[error("{file} is not a detached PKCS#7 signature ({what})")]
    NotDetachedSignedData {
        /// The signature file.
        file: PathBuf,
        /// What it is instead.
        what: &'static str,
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
        /// Why: `bad signature`, `signer certificate not found`, `digest mismatch`, ...
        reason: &'static str,
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
///
/// What OpenSSL's `PKCS7_verify` checks with `NOINTERN | NOVERIFY | BINARY` (the flags
/// `openssl smime -verify -nointern -noverify -binary` uses), done here in Rust so that the
/// `realms` binary does not load libcrypto on every start: every signer must be a keyring
/// certificate (matched by issuer and serial, or by subject key identifier); with signed
/// attributes, their message digest must be the root hash's and the signature is over them,
/// without, over the root hash's hex itself; RSA PKCS#1 v1.5 and ECDSA P-256/P-384 with
/// SHA-256/384/512, the algorithms `openssl smime -sign` and the kernel use.
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
    let not_detached = |what| SignatureError::NotDetachedSignedData {
        file: signature.to_owned(),
        what,
    };
    let info = ContentInfo::from_der(&der).map_err(bad)?;
    if info.content_type != oid::SIGNED_DATA {
        return Err(not_detached("its content is not signedData"));
    }
    let signed: SignedData = info.content.decode_as().map_err(bad)?;
    if signed.encap_content_info.econtent.is_some() {
        return Err(not_detached("it carries its own content"));
    }
    let root_hex = hex::encode(root_hash);
    let untrusted = |reason| SignatureError::NotTrusted {
        file: signature.to_owned(),
        root_hash: root_hex.clone(),
        keyring: keyring.to_owned(),
        reason,
    };
    let mut first = None;
    for info in signed.signer_infos.0.iter() {
        let (file, cert) = certs
            .iter()
            .find(|(_, cert)| is_signer(&info.sid, cert))
            .ok_or_else(|| untrusted("signer certificate not found"))?;
        check_signer_info(info, cert, root_hex.as_bytes()).map_err(untrusted)?;
        first.get_or_insert((file, cert));
    }
    let (file, cert) = first.ok_or_else(|| untrusted("no signers"))?;
    Ok(Signer {
        subject: subject_line(cert),
        certificate: file.clone(),
    })
}

/// Whether the signer identifier names this certificate.
fn is_signer(sid: &SignerIdentifier, cert: &Certificate) -> bool {
    let tbs = &cert.tbs_certificate;
    match sid {
        SignerIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber {
            issuer,
            serial_number,
        }) => *issuer == tbs.issuer && *serial_number == tbs.serial_number,
        SignerIdentifier::SubjectKeyIdentifier(ski) => {
            matches!(tbs.get::<SubjectKeyIdentifier>(), Ok(Some((_, own))) if own == *ski)
        }
    }
}

/// Checks one signer's signature over `content` with the certificate's key.
fn check_signer_info(
    info: &SignerInfo,
    cert: &Certificate,
    content: &[u8],
) -> Result<(), &'static str> {
    let digest = match info.digest_alg.oid {
        oid::SHA256 => &ring::digest::SHA256,
        oid::SHA384 => &ring::digest::SHA384,
        oid::SHA512 => &ring::digest::SHA512,
        _ => return Err("unsupported digest algorithm"),
    };
    let signed_bytes = match &info.signed_attrs {
        None => content.to_vec(),
        Some(attrs) => {
            let value = |wanted: ObjectIdentifier| {
                let mut found = attrs.iter().filter(|a| a.oid == wanted);
                match (found.next(), found.next()) {
                    (Some(a), None) if a.values.len() == 1 => a.values.get(0),
                    _ => None,
                }
            };
            let content_type = value(oid::CONTENT_TYPE)
                .and_then(|v| v.decode_as::<ObjectIdentifier>().ok())
                .ok_or("no content type attribute")?;
            if content_type != oid::DATA {
                return Err("content type attribute is not data");
            }
            let expected = value(oid::MESSAGE_DIGEST)
                .and_then(|v| v.decode_as::<OctetString>().ok())
                .ok_or("no message digest attribute")?;
            if expected.as_bytes() != ring::digest::digest(digest, content).as_ref() {
                return Err("digest mismatch");
            }
            // The signature covers the attributes' DER as a SET, not with its [0] tag.
            attrs
                .to_der()
                .map_err(|_| "signed attributes do not encode")?
        }
    };
    let spki = &cert.tbs_certificate.subject_public_key_info;
    let key = spki
        .subject_public_key
        .as_bytes()
        .ok_or("the certificate's key is not whole bytes")?;
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
    let algorithm: &dyn VerificationAlgorithm = match (spki.algorithm.oid, curve, digest) {
        (oid::RSA, _, d) if d == &ring::digest::SHA256 => &sig::RSA_PKCS1_2048_8192_SHA256,
        (oid::RSA, _, d) if d == &ring::digest::SHA384 => &sig::RSA_PKCS1_2048_8192_SHA384,
        (oid::RSA, _, _) => &sig::RSA_PKCS1_2048_8192_SHA512,
        (oid::EC, Some(oid::P256), d) if d == &ring::digest::SHA256 => &sig::ECDSA_P256_SHA256_ASN1,
        (oid::EC, Some(oid::P256), d) if d == &ring::digest::SHA384 => &sig::ECDSA_P256_SHA384_ASN1,
        (oid::EC, Some(oid::P384), d) if d == &ring::digest::SHA256 => &sig::ECDSA_P384_SHA256_ASN1,
        (oid::EC, Some(oid::P384), d) if d == &ring::digest::SHA384 => &sig::ECDSA_P384_SHA384_ASN1,
        _ => return Err("unsupported key or signature algorithm"),
    };
    sig::UnparsedPublicKey::new(algorithm, key)
        .verify(&signed_bytes, info.signature.as_bytes())
        .map_err(|_| "bad signature")
}

/// `CN=name, O=org` from a certificate's subject, in the certificate's order.
fn subject_line(cert: &Certificate) -> String {
    cert.tbs_certificate
        .subject
        .0
        .iter()
        .map(|rdn| rdn.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Every certificate of the keyring directory, with the file it came from, in name order.
fn read_keyring(dir: &Path) -> Result<Vec<(PathBuf, Certificate)>, SignatureError> {
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
            Certificate::load_pem_chain(&bytes)
        } else {
            Certificate::from_der(&bytes).map(|c| vec![c])
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

#[cfg(test)]
mod tests {
    use super::*;

    fn empty_keyring(dir: &Path) -> PathBuf {
        let keyring = dir.join("certs.d");
        std::fs::create_dir(&keyring).unwrap();
        keyring
    }

    #[test]
    fn an_empty_keyring_trusts_nothing_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let keyring = empty_keyring(dir.path());
        let sig = dir.path().join("x.p7s");
        std::fs::write(&sig, b"junk").unwrap();
        let err = verify_root_hash_signature(&[0; 32], &sig, &keyring).unwrap_err();
        assert!(matches!(err, SignatureError::EmptyKeyring { .. }), "{err}");
        assert!(err.to_string().contains(&keyring.display().to_string()));
    }

    #[test]
    fn a_certificate_file_that_is_not_one_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let keyring = empty_keyring(dir.path());
        let bad = keyring.join("junk.pem");
        std::fs::write(
            &bad,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let sig = dir.path().join("x.p7s");
        std::fs::write(&sig, b"junk").unwrap();
        let err = verify_root_hash_signature(&[0; 32], &sig, &keyring).unwrap_err();
        assert!(
            matches!(err, SignatureError::BadCertificate { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("junk.pem"), "{err}");
    }

    #[test]
    fn a_missing_keyring_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let sig = dir.path().join("x.p7s");
        std::fs::write(&sig, b"junk").unwrap();
        let none = dir.path().join("none");
        let err = verify_root_hash_signature(&[0; 32], &sig, &none).unwrap_err();
        assert!(matches!(err, SignatureError::ReadKeyring { .. }), "{err}");
        assert!(err.to_string().contains(&none.display().to_string()));
    }
}
