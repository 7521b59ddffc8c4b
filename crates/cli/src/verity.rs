//! `realms verity format|verify|repair`: dm-verity hash areas (and Reed–Solomon FEC) for image
//! builders, veritysetup-compatible.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use realms_sys::device;
use realms_verity::{
    Error, FailureSite, FecLayout, FecOutcome, FecParams, FormatOutput, HashAlgorithm, Options,
    Params, format_uuid, parse_root_hash, salt_text,
};
use serde::Serialize;

use crate::output::{Ctx, print_error};
use realms_sys::event::Event;

/// veritysetup's exit status for a device that fails verification.
const EXIT_CORRUPT: u8 = 2;

/// `realms verity ...`.
#[derive(Debug, Subcommand)]
pub enum VerityCommand {
    /// Hash DATA and write the hash area (superblock and hash tree) to HASH; print the root hash.
    Format {
        /// The data device or image file.
        data: PathBuf,
        /// Where the hash area goes (created if missing; may be DATA with --hash-offset).
        hash: PathBuf,
        #[command(flatten)]
        opts: VerityOpts,
    },
    /// Check DATA against HASH and ROOT_HASH; exit status 2 names the first bad block.
    Verify {
        /// The data device or image file.
        data: PathBuf,
        /// The hash area written by `format` (or by veritysetup).
        hash: PathBuf,
        /// The root hash, in hex (or give --root-hash-file).
        #[arg(required_unless_present = "root_hash_file")]
        root_hash: Option<String>,
        #[command(flatten)]
        opts: VerityOpts,
        #[command(flatten)]
        signature: SignatureOpts,
    },
    /// Verify like `verify`, and correct in place what the FEC device (--fec-device) can.
    Repair {
        /// The data device or image file.
        data: PathBuf,
        /// The hash area written by `format` (or by veritysetup).
        hash: PathBuf,
        /// The root hash, in hex (or give --root-hash-file).
        #[arg(required_unless_present = "root_hash_file")]
        root_hash: Option<String>,
        #[command(flatten)]
        opts: VerityOpts,
        #[command(flatten)]
        signature: SignatureOpts,
    },
}

/// veritysetup's options of the same names.
#[derive(Debug, Args)]
pub struct VerityOpts {
    /// Hash algorithm: sha256 (default), sha1, sha224, sha384, sha512, sha3-224, sha3-256,
    /// sha3-384, sha3-512 or blake2b-512.
    #[arg(long = "hash", value_name = "ALG")]
    hash_algorithm: Option<HashAlgorithm>,
    /// Data block size in bytes: a power of two from 512 to 4096 (default 4096).
    #[arg(long, value_name = "BYTES")]
    data_block_size: Option<u32>,
    /// Hash block size in bytes: a power of two from 512 to 4096 (default 4096).
    #[arg(long, value_name = "BYTES")]
    hash_block_size: Option<u32>,
    /// Salt in hex, `-` for none; format picks 32 random bytes when not given.
    #[arg(long, value_name = "HEX|-")]
    salt: Option<String>,
    /// The superblock's uuid; format picks a random one when not given.
    #[arg(long, value_name = "UUID")]
    uuid: Option<String>,
    /// Write (or expect) no superblock: the parameters must then be given on every use.
    #[arg(long)]
    no_superblock: bool,
    /// Byte offset of the hash area in HASH (a multiple of 512).
    #[arg(long, value_name = "BYTES", default_value_t = 0)]
    hash_offset: u64,
    /// Number of data blocks to cover (default: all whole blocks of DATA).
    #[arg(long, value_name = "N")]
    data_blocks: Option<u64>,
    /// Hash type: 1 (default) or 0, the original Chromium OS format.
    #[arg(long = "format", value_name = "TYPE")]
    hash_type: Option<u32>,
    /// format: write the root hash (hex) to FILE; verify: read it from FILE.
    #[arg(long, value_name = "FILE")]
    root_hash_file: Option<PathBuf>,
    /// Reed–Solomon parity for forward error correction: written by format, used by verify and
    /// repair (may be HASH or DATA, with --fec-offset).
    #[arg(long, value_name = "PATH")]
    fec_device: Option<PathBuf>,
    /// Byte offset of the FEC area in the FEC device (a multiple of 512).
    #[arg(long, value_name = "BYTES", default_value_t = 0)]
    fec_offset: u64,
    /// Parity bytes per 255-byte codeword, 2 to 24 (default 2).
    #[arg(long, value_name = "N", default_value_t = realms_verity::DEFAULT_ROOTS)]
    fec_roots: u32,
}

/// `--root-hash-signature` and where its trusted certificates are.
#[derive(Debug, Args)]
pub struct SignatureOpts {
    /// A detached PKCS#7 (DER) over the hex root hash, as veritysetup and systemd's
    /// `.roothash.p7s` use it: checked against the certificates of --keyring first.
    #[arg(long, value_name = "FILE")]
    root_hash_signature: Option<PathBuf>,
    /// Directory of trusted X.509 certificates (PEM or DER) for --root-hash-signature.
    #[arg(long, value_name = "DIR", default_value = realms_verity::DEFAULT_KEYRING, requires = "root_hash_signature")]
    keyring: PathBuf,
}

impl VerityOpts {
    /// The options as the library takes them.
    fn options(&self) -> Options {
        Options {
            hash: self.hash_algorithm,
            data_block_size: self.data_block_size,
            hash_block_size: self.hash_block_size,
            salt: self.salt.clone(),
            uuid: self.uuid.clone(),
            no_superblock: self.no_superblock,
            hash_offset: self.hash_offset,
            data_blocks: self.data_blocks,
            hash_type: self.hash_type,
        }
    }

    fn fec(&self) -> FecParams {
        FecParams {
            roots: self.fec_roots,
            offset: self.fec_offset,
        }
    }
}

/// Runs one `realms verity` command; exit status 2 when verification fails.
pub fn run(command: VerityCommand, ctx: &Ctx) -> anyhow::Result<ExitCode> {
    match command {
        VerityCommand::Format { data, hash, opts } => run_format(&data, &hash, &opts, ctx),
        VerityCommand::Verify {
            data,
            hash,
            root_hash,
            opts,
            signature,
        } => run_verify(
            &data,
            &hash,
            root_hash.as_deref(),
            &opts,
            &signature,
            false,
            ctx,
        ),
        VerityCommand::Repair {
            data,
            hash,
            root_hash,
            opts,
            signature,
        } => run_verify(
            &data,
            &hash,
            root_hash.as_deref(),
            &opts,
            &signature,
            true,
            ctx,
        ),
    }
}

fn run_format(data: &Path, hash: &Path, opts: &VerityOpts, ctx: &Ctx) -> anyhow::Result<ExitCode> {
    // Refuse bad parameters before creating the hash file.
    let params = opts.options().for_format()?;
    let data_file = device::open_read(data, "data")?;
    let hash_file = device::open_write(hash, "hash", 0o600)?;
    let fec_file = match &opts.fec_device {
        Some(path) => Some((device::open_write(path, "FEC", 0o600)?, path)),
        None => None,
    };
    let result = match &fec_file {
        Some((fec, _)) => {
            realms_verity::format_with_fec(&data_file, &hash_file, fec, &params, &opts.fec())
                .map(|out| (out.tree, Some(out.fec)))
        }
        None => realms_verity::format(&data_file, &hash_file, &params).map(|out| (out, None)),
    };
    let (out, fec) = result.with_context(|| {
        format!(
            "formatting {} with its hash area in {}",
            data.display(),
            hash.display()
        )
    })?;
    device::sync(&hash_file, hash)?;
    if let Some((file, path)) = &fec_file {
        device::sync(file, path)?;
    }
    if let Some(file) = &opts.root_hash_file {
        // Like veritysetup: the hex digits, no newline.
        realms_sys::atomic::write_file(file, hex::encode(&out.root_hash).as_bytes(), 0o644)
            .with_context(|| format!("writing the root hash to {}", file.display()))?;
    }
    ctx.emit(&Report::formatted(&out, fec.as_ref(), data, hash))?;
    Ok(ExitCode::SUCCESS)
}

fn run_verify(
    data: &Path,
    hash: &Path,
    root_hash: Option<&str>,
    opts: &VerityOpts,
    signature: &SignatureOpts,
    repair: bool,
    ctx: &Ctx,
) -> anyhow::Result<ExitCode> {
    let root = root_hash_arg(root_hash, opts.root_hash_file.as_deref())?;
    let root_hash = hex::encode(&root);
    // Like the kernel: a root hash whose signature does not verify is not used at all.
    let signer = match &signature.root_hash_signature {
        Some(file) => Some(realms_verity::verify_root_hash_signature(
            &root,
            file,
            &signature.keyring,
        )?),
        None => None,
    };
    let open = |path: &Path, role: &str| {
        if repair {
            device::open_update(path, role)
        } else {
            device::open_read(path, role)
        }
    };
    let data_file = open(data, "data")?;
    let hash_file = open(hash, "hash")?;
    let fec_file = match &opts.fec_device {
        Some(path) => Some(open(path, "FEC")?),
        None if repair => anyhow::bail!("repair needs the FEC device: give --fec-device"),
        None => None,
    };
    let result = opts.options().for_verify(&hash_file).and_then(|params| {
        let outcome = match &fec_file {
            None => {
                realms_verity::verify(&data_file, &hash_file, &params, &root)?;
                None
            }
            Some(fec) if repair => Some(realms_verity::repair(
                &data_file,
                &hash_file,
                fec,
                &params,
                &opts.fec(),
                &root,
            )?),
            Some(fec) => Some(realms_verity::verify_with_fec(
                &data_file,
                &hash_file,
                fec,
                &params,
                &opts.fec(),
                &root,
            )?),
        };
        Ok((params, outcome))
    });
    match result {
        Ok((params, outcome)) => {
            if repair {
                for (file, path) in [(&data_file, data), (&hash_file, hash)] {
                    device::sync(file, path)?;
                }
                if let (Some(file), Some(path)) = (&fec_file, &opts.fec_device) {
                    device::sync(file, path)?;
                }
            }
            let fixed = outcome.as_ref().map(|o| Corrected::new(o, repair));
            if let Some(fixed) = fixed.as_ref().filter(|f| f.symbols > 0) {
                ctx.say(Event::warning(fixed.to_string()));
            }
            if ctx.json {
                let report = Report {
                    fec: fixed,
                    signer: signer.as_ref().map(SignerReport::new),
                    ..Report::verified(&params, &root, data, hash)
                };
                ctx.emit(&report)?;
            } else {
                let signed = signer
                    .as_ref()
                    .map(|s| format!(", signed by {} ({})", s.subject, s.certificate.display()))
                    .unwrap_or_default();
                ctx.say(Event::progress(format!(
                    "{} verified against {}: root hash {root_hash}{signed}",
                    data.display(),
                    hash.display()
                )));
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(err) if err.is_integrity_failure() => {
            if ctx.json {
                ctx.emit(&Failure::new(&err, data, hash))?;
            }
            let err = anyhow::Error::new(err).context(format!(
                "verifying {} against {}",
                data.display(),
                hash.display()
            ));
            print_error(&err);
            Ok(ExitCode::from(EXIT_CORRUPT))
        }
        Err(err) => Err(err)
            .with_context(|| format!("verifying {} against {}", data.display(), hash.display())),
    }
}

/// The root hash given on the command line, or else read from `--root-hash-file` (hex digits,
/// surrounding white space ignored, as veritysetup reads it).
fn root_hash_arg(arg: Option<&str>, file: Option<&Path>) -> anyhow::Result<Vec<u8>> {
    match (arg, file) {
        (Some(text), _) => Ok(parse_root_hash(text)?),
        (None, Some(file)) => {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("reading the root hash file {}", file.display()))?;
            parse_root_hash(text.trim())
                .with_context(|| format!("reading the root hash file {}", file.display()))
        }
        (None, None) => anyhow::bail!("no root hash: give ROOT_HASH or --root-hash-file"),
    }
}

/// The parameters and the root hash, as `format` prints them and `--json` shows them.
#[derive(Debug, Serialize)]
struct Report {
    #[serde(skip_serializing_if = "Option::is_none")]
    verified: Option<bool>,
    data_device: PathBuf,
    hash_device: PathBuf,
    uuid: Option<String>,
    hash_type: u32,
    data_blocks: Option<u64>,
    data_block_size: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    hash_blocks: Option<u64>,
    hash_block_size: u32,
    hash_algorithm: String,
    salt: String,
    superblock: bool,
    hash_offset: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    hash_area_size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fec_roots: Option<u32>,
    /// The FEC area's size in blocks (veritysetup's "FEC blocks").
    #[serde(skip_serializing_if = "Option::is_none")]
    fec_blocks: Option<u64>,
    root_hash: String,
    /// What FEC corrected, when verifying with a FEC device.
    #[serde(skip_serializing_if = "Option::is_none")]
    fec: Option<Corrected>,
    /// Who signed the root hash, when verified with --root-hash-signature.
    #[serde(skip_serializing_if = "Option::is_none")]
    signer: Option<SignerReport>,
}

/// The signer of a root hash for `--json`.
#[derive(Debug, Serialize)]
struct SignerReport {
    subject: String,
    certificate: PathBuf,
}

impl SignerReport {
    fn new(signer: &realms_verity::Signer) -> SignerReport {
        SignerReport {
            subject: signer.subject.clone(),
            certificate: signer.certificate.clone(),
        }
    }
}

/// What verify or repair corrected with FEC.
#[derive(Debug, Serialize)]
struct Corrected {
    repaired: bool,
    /// Bytes corrected (veritysetup's "repairable errors").
    symbols: u64,
    data_blocks: Vec<u64>,
    hash_blocks: Vec<u64>,
    parity_bytes: usize,
    /// Where verification without FEC first failed.
    failure: Option<String>,
}

impl Corrected {
    fn new(outcome: &FecOutcome, repaired: bool) -> Corrected {
        let bs = outcome.layout.block_size;
        let c = &outcome.corrections;
        Corrected {
            repaired,
            symbols: c.symbols,
            data_blocks: c.data.keys().map(|o| o / bs).collect(),
            hash_blocks: c.hash.keys().map(|o| o / bs).collect(),
            parity_bytes: c.parity.len(),
            failure: outcome.failure.as_ref().map(|f| f.to_string()),
        }
    }
}

impl fmt::Display for Corrected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = if self.repaired {
            "repaired with the FEC device"
        } else {
            "found, repairable with the FEC device,"
        };
        write!(f, "{verb} {} corrupted bytes", self.symbols)?;
        if !self.data_blocks.is_empty() {
            write!(f, " in data blocks {:?}", self.data_blocks)?;
        }
        if !self.hash_blocks.is_empty() {
            write!(f, " in hash device blocks {:?}", self.hash_blocks)?;
        }
        if self.parity_bytes > 0 {
            write!(f, " ({} in the parity)", self.parity_bytes)?;
        }
        Ok(())
    }
}

impl Report {
    fn new(params: &Params, root: &[u8], data: &Path, hash: &Path) -> Report {
        Report {
            verified: None,
            data_device: data.to_path_buf(),
            hash_device: hash.to_path_buf(),
            uuid: params.uuid.as_ref().map(format_uuid),
            hash_type: params.hash_type,
            data_blocks: params.data_blocks,
            data_block_size: params.data_block_size,
            hash_blocks: None,
            hash_block_size: params.hash_block_size,
            hash_algorithm: params.hash.to_string(),
            salt: salt_text(&params.salt),
            superblock: params.superblock,
            hash_offset: params.hash_offset,
            hash_area_size: None,
            fec_roots: None,
            fec_blocks: None,
            root_hash: hex::encode(root),
            fec: None,
            signer: None,
        }
    }

    fn formatted(out: &FormatOutput, fec: Option<&FecLayout>, data: &Path, hash: &Path) -> Report {
        Report {
            hash_blocks: Some(out.hash_blocks),
            hash_area_size: Some(out.hash_area_size),
            fec_roots: fec.map(|f| f.roots),
            fec_blocks: fec.map(|f| f.size / f.block_size),
            ..Report::new(&out.params, &out.root_hash, data, hash)
        }
    }

    fn verified(params: &Params, root: &[u8], data: &Path, hash: &Path) -> Report {
        Report {
            verified: Some(true),
            ..Report::new(params, root, data, hash)
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // veritysetup's layout, so scripts written for it keep working.
        writeln!(
            f,
            "UUID:            \t{}",
            self.uuid.as_deref().unwrap_or("")
        )?;
        writeln!(f, "Hash type:       \t{}", self.hash_type)?;
        writeln!(f, "Data blocks:     \t{}", self.data_blocks.unwrap_or(0))?;
        writeln!(f, "Data block size: \t{}", self.data_block_size)?;
        writeln!(f, "Hash blocks:     \t{}", self.hash_blocks.unwrap_or(0))?;
        writeln!(f, "Hash block size: \t{}", self.hash_block_size)?;
        writeln!(f, "Hash algorithm:  \t{}", self.hash_algorithm)?;
        if let (Some(roots), Some(blocks)) = (self.fec_roots, self.fec_blocks) {
            writeln!(f, "FEC RS roots:   \t{roots}")?;
            writeln!(f, "FEC blocks:     \t{blocks}")?;
        }
        writeln!(f, "Salt:            \t{}", self.salt)?;
        writeln!(f, "Root hash:      \t{}", self.root_hash)
    }
}

/// A failed verification for `--json`: what failed and where.
#[derive(Debug, Serialize)]
struct Failure {
    verified: bool,
    data_device: PathBuf,
    hash_device: PathBuf,
    /// `data`, `hash`, `root-hash` or `superblock`.
    area: &'static str,
    level: Option<usize>,
    block: Option<u64>,
    offset: Option<u64>,
    error: String,
}

impl Failure {
    fn new(err: &Error, data: &Path, hash: &Path) -> Failure {
        let FailureSite {
            area,
            level,
            block,
            offset,
        } = err.failure_site();
        Failure {
            verified: false,
            data_device: data.to_path_buf(),
            hash_device: hash.to_path_buf(),
            area,
            level,
            block,
            offset,
            error: err.to_string(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// `realms verity ...` as the CLI parses it (args.rs flattens [`VerityCommand`] the same
    /// way; its `every_subcommand_parses` covers the whole command line).
    #[derive(Debug, Parser)]
    #[command(name = "realms")]
    struct Cli {
        /// The global `--json` of args.rs, which may come before the subcommand.
        #[arg(long, global = true)]
        json: bool,
        #[command(subcommand)]
        command: Top,
    }

    #[derive(Debug, clap::Subcommand)]
    enum Top {
        #[command(subcommand)]
        Verity(VerityCommand),
    }

    fn parse(args: &[&str]) -> VerityCommand {
        let Top::Verity(cmd) = Cli::try_parse_from(args).unwrap().command;
        cmd
    }

    #[test]
    fn options_map_to_params() {
        let cmd = parse(&[
            "realms",
            "verity",
            "format",
            "d",
            "h",
            "--hash=sha512",
            "--data-block-size=1024",
            "--hash-block-size=512",
            "--salt=-",
            "--uuid=12345678-1234-1234-1234-123456789ABC",
            "--no-superblock",
            "--hash-offset=4096",
            "--data-blocks=3",
        ]);
        let VerityCommand::Format { opts, .. } = cmd else {
            panic!("{cmd:?}")
        };
        let params = opts.options().apply(Params::default()).unwrap();
        assert_eq!(
            params,
            Params {
                hash: HashAlgorithm::Sha512,
                data_block_size: 1024,
                hash_block_size: 512,
                salt: vec![],
                uuid: realms_verity::parse_uuid("12345678-1234-1234-1234-123456789abc"),
                superblock: false,
                hash_offset: 4096,
                data_blocks: Some(3),
                hash_type: 1,
            }
        );
        // Options not given keep the superblock's values.
        let cmd = parse(&["realms", "--json", "verity", "verify", "d", "h", "abcd"]);
        let VerityCommand::Verify {
            opts, root_hash, ..
        } = cmd
        else {
            panic!("{cmd:?}")
        };
        assert_eq!(root_hash.as_deref(), Some("abcd"));
        let base = Params {
            hash: HashAlgorithm::Sha1,
            salt: vec![1],
            ..Params::default()
        };
        assert_eq!(opts.options().apply(base.clone()).unwrap(), base);
        assert!(
            Cli::try_parse_from(["realms", "verity", "format", "d", "h", "--hash=md5"]).is_err()
        );
    }
}
