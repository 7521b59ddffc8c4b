//! dm-verity against the real veritysetup: 200 random (data, parameters) cases, both hash types,
//! every hash algorithm, each formatted by both tools into separate hash devices that must be
//! byte-identical with the same root hash (and the same `--root-hash-file`), and each tool's verify must accept the other's
//! hash device, with the root hash read from the other's root hash file.

use std::path::{Path, PathBuf};
use std::process::Command;

use realms_tests::realms_bin;
use realms_tests::require;
use realms_tests::run::{argv, output, run};

const CASES: usize = 200;
const DEFAULT_SEED: u64 = 0x7e51_7e51_0000_0001;

/// Every hash algorithm realms takes: the ones veritysetup (OpenSSL) and the kernel crypto API
/// both offer. The first cases go through all of them in turn, the rest pick at random.
const HASHES: [&str; 10] = [
    "sha1",
    "sha224",
    "sha256",
    "sha384",
    "sha512",
    "sha3-224",
    "sha3-256",
    "sha3-384",
    "sha3-512",
    "blake2b-512",
];

/// splitmix64: deterministic, so a failing case reproduces from the printed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// One random case.
#[derive(Debug)]
struct Case {
    data_size: u64,
    hash: &'static str,
    data_block_size: u64,
    hash_block_size: u64,
    salt: String,
    uuid: Option<String>,
    superblock: bool,
    /// `Some(offset)`: the hash area lives in the data file at this offset.
    same_file_offset: Option<u64>,
    /// A hash offset in a separate hash file.
    hash_offset: u64,
    data_blocks: Option<u64>,
    /// `--format`: 1, or 0 for the Chromium OS format.
    hash_type: u32,
}

impl Case {
    fn random(rng: &mut Rng) -> Case {
        let sizes = [512, 1024, 2048, 4096];
        let data_block_size = rng.pick(&sizes);
        let hash_block_size = rng.pick(&sizes);
        // Log-uniform sizes from one block to a few MiB, not always whole blocks.
        let spread = 1 << rng.below(11);
        let blocks = 1 + (1u64 << rng.below(12)) + rng.below(spread);
        let blocks = blocks.min((3 << 20) / data_block_size);
        let data_size =
            blocks * data_block_size + rng.pick(&[0, 0, 0, 1, 100, data_block_size - 1]);
        let salt_len = rng.pick(&[0usize, 0, 1, 16, 32, 32, 64, 100, 255, 256]);
        let salt = rng.bytes(salt_len);
        let superblock = rng.below(4) != 0;
        let uuid = superblock.then(|| {
            let h = hex::encode(rng.bytes(16));
            format!(
                "{}-{}-{}-{}-{}",
                &h[..8],
                &h[8..12],
                &h[12..16],
                &h[16..20],
                &h[20..]
            )
        });
        let whole = data_size / data_block_size;
        let data_blocks = (rng.below(4) == 0).then(|| 1 + rng.below(whole));
        let same_file_offset = (rng.below(3) == 0).then(|| {
            // Past the data; without a superblock veritysetup puts the tree at the hash block
            // the offset falls in, so keep that past the data too.
            let align = if superblock { 512 } else { hash_block_size };
            data_size.div_ceil(align) * align + 512 * rng.below(9)
        });
        let mut hash_offset = if rng.below(5) == 0 {
            512 * rng.below(17)
        } else {
            0
        };
        let mut same_file_offset = same_file_offset;
        if superblock && data_blocks.unwrap_or(whole) == 1 {
            // veritysetup 2.6.1 fails ("Error during update of verity header") to write a
            // superblock past the end of the file at an offset that is not a multiple of 4096
            // when there is no tree to write first (one data block); realms does not.
            hash_offset = hash_offset.next_multiple_of(4096);
            same_file_offset = same_file_offset.map(|o| o.next_multiple_of(4096));
        }
        let hash = if rng.below(2) == 0 {
            "sha256"
        } else {
            rng.pick(&HASHES)
        };
        Case {
            hash_type: rng.pick(&[1, 1, 0]),
            data_size,
            hash,
            data_block_size,
            hash_block_size,
            salt: if salt.is_empty() {
                "-".into()
            } else {
                hex::encode(salt)
            },
            uuid,
            superblock,
            same_file_offset,
            hash_offset,
            data_blocks,
        }
    }

    /// The options both tools get for `format` (and `verify`, with the data block count).
    fn options(&self, data_blocks: Option<u64>) -> Vec<String> {
        let mut opts = vec![
            format!("--hash={}", self.hash),
            format!("--data-block-size={}", self.data_block_size),
            format!("--hash-block-size={}", self.hash_block_size),
            format!("--salt={}", self.salt),
            format!(
                "--hash-offset={}",
                self.same_file_offset.unwrap_or(self.hash_offset)
            ),
        ];
        if let Some(uuid) = &self.uuid {
            opts.push(format!("--uuid={uuid}"));
        }
        if !self.superblock {
            opts.push("--no-superblock".into());
        }
        if let Some(n) = data_blocks.or(self.data_blocks) {
            opts.push(format!("--data-blocks={n}"));
        }
        opts.push(format!("--format={}", self.hash_type));
        opts
    }
}

/// The value of a `Key: value` line in veritysetup-style output.
fn field(output: &[u8], key: &str) -> String {
    let text = String::from_utf8_lossy(output);
    text.lines()
        .find_map(|l| l.strip_prefix(key).and_then(|v| v.strip_prefix(':')))
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| panic!("no '{key}:' line in:\n{text}"))
}

/// Formats with one tool; returns (data device, hash device, root hash, data blocks).
fn format_with(
    tool: &Path,
    realms: bool,
    case: &Case,
    dir: &Path,
    data: &[u8],
) -> (PathBuf, PathBuf, String, u64) {
    let name = if realms { "realms" } else { "veritysetup" };
    let (data_path, hash_path) = if case.same_file_offset.is_some() {
        let path = dir.join(format!("{name}.img"));
        std::fs::write(&path, data).unwrap();
        (path.clone(), path)
    } else {
        let path = dir.join("data.img");
        if !path.exists() {
            std::fs::write(&path, data).unwrap();
        }
        (path, dir.join(format!("{name}.hash")))
    };
    let mut cmd = Command::new(tool);
    if realms {
        cmd.args(["verity", "format"]);
    } else {
        cmd.arg("format");
    }
    let root_file = dir.join(format!("{name}.roothash"));
    let out = run(cmd
        .arg(&data_path)
        .arg(&hash_path)
        .args(case.options(None))
        .arg(format!("--root-hash-file={}", root_file.display())));
    let root = field(&out.stdout, "Root hash");
    assert_eq!(std::fs::read_to_string(&root_file).unwrap(), root, "{name}");
    let blocks = field(&out.stdout, "Data blocks").parse().unwrap();
    (data_path, hash_path, root, blocks)
}

fn verify_with(
    tool: &Path,
    realms: bool,
    case: &Case,
    data: &Path,
    hash: &Path,
    root: &str,
    blocks: u64,
) {
    let mut cmd = Command::new(tool);
    if realms {
        cmd.args(["verity", "verify"]);
    } else {
        cmd.arg("verify");
    }
    cmd.arg(data).arg(hash).args(case.options(Some(blocks)));
    if realms {
        // The other tool's root hash file instead of the argument.
        let file = hash.with_file_name("veritysetup.roothash");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), root);
        cmd.arg(format!("--root-hash-file={}", file.display()));
    } else {
        cmd.arg(root);
    }
    let out = output(&mut cmd);
    assert!(
        out.status.success(),
        "`{}` rejected the other tool's hash device ({}):\n{}{}",
        argv(&cmd),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn run_case(index: usize, case: &Case, rng: &mut Rng, realms: &Path, veritysetup: &Path) {
    let dir = tempfile::Builder::new()
        .prefix("realms-verity-")
        .tempdir()
        .unwrap();
    let data = rng.bytes(case.data_size as usize);
    let (our_data, our_hash, our_root, our_blocks) =
        format_with(realms, true, case, dir.path(), &data);
    let (vs_data, vs_hash, vs_root, vs_blocks) =
        format_with(veritysetup, false, case, dir.path(), &data);
    let label = format!("case {index}: {case:?}");
    assert_eq!(our_root, vs_root, "root hashes differ in {label}");
    assert_eq!(our_blocks, vs_blocks, "data block counts differ in {label}");
    let ours = std::fs::read(&our_hash).unwrap();
    let theirs = std::fs::read(&vs_hash).unwrap();
    assert_eq!(
        ours.len(),
        theirs.len(),
        "hash device sizes differ in {label}"
    );
    if let Some(i) = ours.iter().zip(&theirs).position(|(a, b)| a != b) {
        panic!("hash devices differ first at byte {i} in {label}");
    }
    verify_with(
        veritysetup,
        false,
        case,
        &our_data,
        &our_hash,
        &our_root,
        our_blocks,
    );
    verify_with(realms, true, case, &vs_data, &vs_hash, &vs_root, vs_blocks);
}

#[test]
fn random_cases_match_veritysetup_byte_for_byte() {
    require::tool("veritysetup", "cryptsetup-bin");
    let veritysetup = require::which("veritysetup").unwrap();
    let realms = realms_bin();
    let seed = std::env::var("REALMS_VERITY_SEED")
        .ok()
        .and_then(|s| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok())
        .unwrap_or(DEFAULT_SEED);
    println!("verity differential seed {seed:#x} (set REALMS_VERITY_SEED to replay another)");
    let mut rng = Rng(seed);
    let mut with_sb = 0;
    let mut type0 = 0;
    let mut same_file = 0;
    for index in 0..CASES {
        let mut case = Case::random(&mut rng);
        if let Some(hash) = HASHES.get(index) {
            case.hash = hash;
        }
        with_sb += usize::from(case.superblock);
        type0 += usize::from(case.hash_type == 0);
        same_file += usize::from(case.same_file_offset.is_some());
        run_case(index, &case, &mut rng, &realms, &veritysetup);
    }
    println!(
        "{CASES} cases: {with_sb} with a superblock, {same_file} with the hash area in the data file, {type0} of hash type 0"
    );
}

#[test]
fn hash_types_other_than_0_and_1_are_refused_like_veritysetup() {
    require::tool("veritysetup", "cryptsetup-bin");
    let dir = tempfile::Builder::new()
        .prefix("realms-verity-type-")
        .tempdir()
        .unwrap();
    let data = dir.path().join("data.img");
    std::fs::write(&data, vec![7u8; 8192]).unwrap();
    for hash_type in ["2", "3", "255"] {
        let hash = dir.path().join(format!("h{hash_type}"));
        let mut vs = Command::new("veritysetup");
        vs.arg("format").arg(&data).arg(&hash);
        vs.arg(format!("--format={hash_type}"));
        let theirs = output(&mut vs);
        let hash = dir.path().join(format!("ours{hash_type}"));
        let mut ours = Command::new(realms_bin());
        ours.args(["verity", "format"]).arg(&data).arg(&hash);
        ours.arg(format!("--format={hash_type}"));
        let ours = output(&mut ours);
        assert!(
            !theirs.status.success(),
            "veritysetup took type {hash_type}"
        );
        assert!(!ours.status.success(), "realms took type {hash_type}");
        let text = String::from_utf8_lossy(&ours.stderr);
        assert!(text.contains(&format!("hash type {hash_type}")), "{text}");
        assert!(
            !hash.exists(),
            "a hash file was written for type {hash_type}"
        );
    }
}

/// Where a FEC case puts the FEC area.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FecPlace {
    /// Its own file.
    Own,
    /// The hash file, right after the tree.
    HashFile,
    /// The data file, right after the data.
    DataFile,
}

/// Runs `tool format` (or `realms verity format`) with FEC; returns the root hash.
fn fec_format(tool: &Path, realms: bool, files: &[PathBuf; 3], opts: &[String]) -> String {
    let mut cmd = Command::new(tool);
    if realms {
        cmd.args(["verity", "format"]);
    } else {
        cmd.arg("format");
    }
    let out = run(cmd
        .arg(&files[0])
        .arg(&files[1])
        .arg(format!("--fec-device={}", files[2].display()))
        .args(opts));
    field(&out.stdout, "Root hash")
}

/// Verifies with FEC; returns the number of repairable errors the tool reported.
fn fec_verify(tool: &Path, realms: bool, files: &[PathBuf; 3], root: &str, opts: &[String]) -> u64 {
    let mut cmd = Command::new(tool);
    if realms {
        cmd.args(["--json", "verity", "verify"]);
    } else {
        cmd.arg("verify");
    }
    cmd.arg(&files[0])
        .arg(&files[1])
        .arg(root)
        .arg(format!("--fec-device={}", files[2].display()))
        .args(opts);
    let out = output(&mut cmd);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "`{}` failed ({}):\n{stderr}",
        argv(&cmd),
        out.status
    );
    if realms {
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        json["fec"]["symbols"].as_u64().unwrap()
    } else {
        stderr
            .lines()
            .find_map(|l| l.strip_prefix("Found "))
            .and_then(|l| l.split(' ').next())
            .map_or(0, |n| n.parse().unwrap())
    }
}

#[test]
fn fec_areas_match_veritysetup_for_every_roots_value() {
    require::tool("veritysetup", "cryptsetup-bin");
    let veritysetup = require::which("veritysetup").unwrap();
    let realms = realms_bin();
    let mut rng = Rng(0xfec0_0000_0000_0001);
    for roots in 2..=24u32 {
        let dir = tempfile::Builder::new()
            .prefix("realms-verity-fec-")
            .tempdir()
            .unwrap();
        let block = rng.pick(&[512u64, 1024, 4096, 4096]);
        let blocks = 1 + rng.below((1 << 20) / block) + rng.below(300);
        let data = rng.bytes((blocks * block) as usize);
        let place = rng.pick(&[FecPlace::Own, FecPlace::HashFile, FecPlace::DataFile]);
        let hash_type = rng.pick(&[1, 1, 0]);
        let mut opts = vec![
            format!("--hash={}", rng.pick(&HASHES)),
            format!("--data-block-size={block}"),
            format!("--hash-block-size={block}"),
            format!("--salt={}", hex::encode(rng.bytes(32))),
            "--uuid=12345678-1234-1234-1234-123456789abc".to_string(),
            format!("--format={hash_type}"),
            format!("--fec-roots={roots}"),
        ];
        let label =
            format!("roots {roots}, {blocks} blocks of {block}, FEC in {place:?}, {opts:?}");
        let files = |name: &str| -> [PathBuf; 3] {
            let data_path = dir.path().join(format!("{name}.img"));
            std::fs::write(&data_path, &data).unwrap();
            let hash = dir.path().join(format!("{name}.hash"));
            let fec = match place {
                FecPlace::Own => dir.path().join(format!("{name}.fec")),
                FecPlace::HashFile => hash.clone(),
                FecPlace::DataFile => data_path.clone(),
            };
            [data_path, hash, fec]
        };
        match place {
            FecPlace::Own => {}
            FecPlace::HashFile => {
                // Right after the tree: its size comes from a format without FEC.
                let probe = files("probe");
                let mut cmd = Command::new(&realms);
                run(cmd
                    .args(["verity", "format"])
                    .arg(&probe[0])
                    .arg(&probe[1])
                    .args(&opts[..6]));
                let end = std::fs::metadata(&probe[1]).unwrap().len();
                opts.push(format!("--fec-offset={end}"));
            }
            FecPlace::DataFile => opts.push(format!("--fec-offset={}", data.len())),
        }
        let ours = files("realms");
        let theirs = files("veritysetup");
        let our_root = fec_format(&realms, true, &ours, &opts);
        let their_root = fec_format(&veritysetup, false, &theirs, &opts);
        assert_eq!(our_root, their_root, "{label}");
        for i in 0..3 {
            let (a, b) = (
                std::fs::read(&ours[i]).unwrap(),
                std::fs::read(&theirs[i]).unwrap(),
            );
            assert_eq!(a.len(), b.len(), "file {i} sizes differ: {label}");
            if let Some(at) = a.iter().zip(&b).position(|(x, y)| x != y) {
                panic!("file {i} differs first at byte {at}: {label}");
            }
        }
        // The same damage to both: a few bytes in one data block.
        let at = rng.below(blocks) * block + rng.below(block - 16);
        let len = 1 + rng.below(16) as usize;
        let junk = rng.bytes(len);
        for files in [&ours, &theirs] {
            let mut bytes = std::fs::read(&files[0]).unwrap();
            for (i, j) in junk.iter().enumerate() {
                bytes[at as usize + i] ^= j | 1;
            }
            std::fs::write(&files[0], bytes).unwrap();
        }
        let by_us = fec_verify(&realms, true, &theirs, &their_root, &opts);
        let by_them = fec_verify(&veritysetup, false, &ours, &our_root, &opts);
        assert_eq!(by_us, junk.len() as u64, "{label}");
        assert_eq!(by_them, by_us, "{label}");
        // Repair restores the data byte for byte.
        let mut cmd = Command::new(&realms);
        run(cmd
            .args(["verity", "repair"])
            .arg(&ours[0])
            .arg(&ours[1])
            .arg(&our_root)
            .arg(format!("--fec-device={}", ours[2].display()))
            .args(&opts));
        let repaired = std::fs::read(&ours[0]).unwrap();
        assert!(repaired[..data.len()] == data[..], "repair: {label}");
    }
}

/// A self-signed certificate and its key, made by the openssl command line tool.
fn make_signer(dir: &Path, name: &str, key: &[&str]) -> (PathBuf, PathBuf) {
    let key_file = dir.join(format!("{name}.key"));
    let cert = dir.join(format!("{name}.pem"));
    run(Command::new("openssl")
        .args(["req", "-x509", "-nodes", "-days", "2", "-newkey"])
        .args(key)
        .args(["-subj", &format!("/CN={name}")])
        .arg("-keyout")
        .arg(&key_file)
        .arg("-out")
        .arg(&cert));
    (key_file, cert)
}

/// Signs `content` as systemd's docs make a `.roothash.p7s`; `attributes` keeps the signed
/// attributes that `-noattr` leaves out.
fn smime_sign(dir: &Path, signer: &(PathBuf, PathBuf), content: &str, attributes: bool) -> PathBuf {
    smime_sign_with(dir, signer, content, attributes, &[])
}

/// [`smime_sign`] with more `openssl smime -sign` options (`-md sha384`); a first option `cms`
/// signs with `openssl cms -sign` instead (for `-keyid`, which PKCS#7 lacks).
fn smime_sign_with(
    dir: &Path,
    signer: &(PathBuf, PathBuf),
    content: &str,
    attributes: bool,
    extra: &[&str],
) -> PathBuf {
    let input = dir.join("content");
    std::fs::write(&input, content).unwrap();
    let out = dir.join(format!(
        "{}-{content:.8}-{attributes}{}.p7s",
        signer.1.file_stem().unwrap().to_string_lossy(),
        extra.join("")
    ));
    let (tool, extra) = match extra {
        ["cms", rest @ ..] => ("cms", rest),
        _ => ("smime", extra),
    };
    let mut cmd = Command::new("openssl");
    cmd.args([tool, "-sign", "-binary", "-outform", "DER", "-nocerts"]);
    cmd.args(extra);
    if !attributes {
        cmd.arg("-noattr");
    }
    run(cmd
        .arg("-in")
        .arg(&input)
        .arg("-inkey")
        .arg(&signer.0)
        .arg("-signer")
        .arg(&signer.1)
        .arg("-out")
        .arg(&out));
    out
}

#[test]
fn root_hash_signatures_made_by_openssl_smime_verify_against_the_keyring_only() {
    require::tool("veritysetup", "cryptsetup-bin");
    require::tool("openssl", "openssl");
    let dir = tempfile::Builder::new()
        .prefix("realms-verity-sig-")
        .tempdir()
        .unwrap();
    let dir = dir.path();
    let data = dir.join("data.img");
    std::fs::write(&data, Rng(0x5161).bytes(300 * 4096)).unwrap();
    let hash = dir.join("data.verity");
    let out = run(Command::new("veritysetup")
        .arg("format")
        .arg(&data)
        .arg(&hash));
    let root = field(&out.stdout, "Root hash");
    let keyring = dir.join("certs.d");
    std::fs::create_dir(&keyring).unwrap();
    let rsa = make_signer(dir, "realms-test-rsa", &["rsa:2048"]);
    let ec = make_signer(
        dir,
        "realms-test-ec",
        &["ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"],
    );
    let p384 = make_signer(
        dir,
        "realms-test-p384",
        &["ec", "-pkeyopt", "ec_paramgen_curve:secp384r1"],
    );
    let stranger = make_signer(dir, "realms-test-stranger", &["rsa:2048"]);
    // The keyring: the RSA and P-384 certificates in PEM, the EC one in DER.
    std::fs::copy(&rsa.1, keyring.join("rsa.pem")).unwrap();
    std::fs::copy(&p384.1, keyring.join("p384.crt")).unwrap();
    run(Command::new("openssl")
        .args(["x509", "-outform", "DER", "-in"])
        .arg(&ec.1)
        .arg("-out")
        .arg(keyring.join("ec.der")));
    // The peer's verdict on the same files: OpenSSL's CMS_verify with the kernel-like flags.
    let bundle = dir.join("bundle.pem");
    let pems = [&rsa.1, &ec.1, &p384.1].map(|f| std::fs::read_to_string(f).unwrap());
    std::fs::write(&bundle, pems.concat()).unwrap();
    let openssl_accepts = |signature: &Path, content: &str| {
        let input = dir.join("peer-content");
        std::fs::write(&input, content).unwrap();
        let mut cmd = Command::new("openssl");
        cmd.args([
            "cms",
            "-verify",
            "-inform",
            "DER",
            "-binary",
            "-nointern",
            "-noverify",
        ])
        .arg("-in")
        .arg(signature)
        .arg("-content")
        .arg(&input)
        .arg("-certfile")
        .arg(&bundle)
        .args(["-out", "/dev/null"]);
        output(&mut cmd).status.success()
    };
    let verify = |signature: &Path| {
        let mut cmd = Command::new(realms_bin());
        cmd.args(["--json", "verity", "verify"])
            .arg(&data)
            .arg(&hash)
            .arg(&root)
            .arg(format!("--root-hash-signature={}", signature.display()))
            .arg(format!("--keyring={}", keyring.display()));
        output(&mut cmd)
    };
    // Good: each key, with or without signed attributes, other digests, signer by key id.
    for (signer, name, attributes, extra) in [
        (&rsa, "realms-test-rsa", false, &[][..]),
        (&rsa, "realms-test-rsa", true, &[]),
        (&rsa, "realms-test-rsa", true, &["-md", "sha512"]),
        (&rsa, "realms-test-rsa", false, &["cms", "-keyid"]),
        (&ec, "realms-test-ec", false, &[]),
        (&ec, "realms-test-ec", true, &[]),
        (&p384, "realms-test-p384", true, &["-md", "sha384"]),
    ] {
        let sig = smime_sign_with(dir, signer, &root, attributes, extra);
        assert!(openssl_accepts(&sig, &root), "{name} {extra:?}: openssl");
        let out = verify(&sig);
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(json["signer"]["subject"], format!("CN={name}"), "{json}");
    }
    // A key outside the keyring, and a signature of another root hash: refused, naming the
    // signature file and the keyring, before any data is read.
    let mut other = root.clone().into_bytes();
    other[0] = if other[0] == b'0' { b'1' } else { b'0' };
    let other = String::from_utf8(other).unwrap();
    for (what, sig) in [
        ("wrong key", smime_sign(dir, &stranger, &root, false)),
        ("other root hash", smime_sign(dir, &rsa, &other, false)),
        (
            "other root hash, attributes",
            smime_sign(dir, &ec, &other, true),
        ),
    ] {
        assert!(!openssl_accepts(&sig, &root), "{what}: openssl accepted it");
        let out = verify(&sig);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{what} was accepted");
        assert!(
            stderr.contains("is not a valid signature of root hash")
                && stderr.contains(&sig.display().to_string())
                && stderr.contains(&keyring.display().to_string()),
            "{what}: {stderr}"
        );
    }
    // The signature of the right root hash does not vouch for a tampered one on the command line.
    let good = smime_sign(dir, &rsa, &root, false);
    let mut cmd = Command::new(realms_bin());
    cmd.args(["verity", "verify"])
        .arg(&data)
        .arg(&hash)
        .arg(&other)
        .arg(format!("--root-hash-signature={}", good.display()))
        .arg(format!("--keyring={}", keyring.display()));
    let out = output(&mut cmd);
    assert!(!out.status.success(), "a tampered root hash was accepted");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is not a valid signature"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // An empty keyring trusts nothing.
    let empty = dir.join("empty.d");
    std::fs::create_dir(&empty).unwrap();
    let mut cmd = Command::new(realms_bin());
    cmd.args(["verity", "verify"])
        .arg(&data)
        .arg(&hash)
        .arg(&root)
        .arg(format!("--root-hash-signature={}", good.display()))
        .arg(format!("--keyring={}", empty.display()));
    let out = output(&mut cmd);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("holds no certificates"));
}
