//! A port of cryptsetup's own tests/verity-compat-test, userspace steps: every case runs with
//! `realms verity` and with the real `veritysetup`, and both must pass. The device-mapper steps
//! (open, in-kernel verification and FEC correction) need a kernel with device-mapper and run in
//! the guest tier (tests/guest/sealed.rs). The expected root hashes are cryptsetup's.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use realms_tests::realms_bin;
use realms_tests::require;
use realms_tests::run::{argv, output};

const SALT: &str = "e48da609055204e89ae53b655ca2216dd983cf3cb829f34f63a297d106d53e2d";
const DEV_SALT: &str = "9e7457222290f1bac0d42ad2de2d602a87bb871c22ab70ca040bad450578a436";
const DEV_UUID: &str = "a60c98d2-ae9b-4865-bfcb-b4e3ace11033";

/// The tool a case runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tool {
    Realms,
    Veritysetup,
}

impl Tool {
    fn both() -> [Tool; 2] {
        require::tool("veritysetup", "cryptsetup-bin");
        [Tool::Realms, Tool::Veritysetup]
    }

    /// `realms verity ACTION` or `veritysetup ACTION`.
    fn cmd(self, action: &str) -> Command {
        match self {
            Tool::Realms => {
                let mut cmd = Command::new(realms_bin());
                cmd.args(["verity", action]);
                cmd
            }
            Tool::Veritysetup => {
                let mut cmd = Command::new("veritysetup");
                cmd.arg(action);
                cmd
            }
        }
    }
}

fn succeeds(tool: Tool, cmd: &mut Command, what: &str) -> Output {
    let out = output(cmd);
    assert!(
        out.status.success(),
        "{tool:?}: {what}: `{}` failed ({}):\n{}",
        argv(cmd),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn fails(tool: Tool, cmd: &mut Command, what: &str) {
    let out = output(cmd);
    assert!(
        !out.status.success(),
        "{tool:?}: {what}: `{}` succeeded",
        argv(cmd)
    );
}

/// The value of a `Key: value` line.
fn field(out: &Output, key: &str) -> String {
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix(key).and_then(|v| v.strip_prefix(':')))
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| panic!("no {key}: line in\n{text}"))
}

fn zeros(path: &Path, size: u64) {
    let _ = fs::remove_file(path);
    fs::File::create(path).unwrap().set_len(size).unwrap();
}

fn poke(path: &Path, offset: u64, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    let f = fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(bytes, offset).unwrap();
}

/// Writes 0x55 at `count` pseudo-random offsets below `size` (the script's corrupt_device).
fn corrupt_device(path: &Path, size: u64, count: u64, seed: &mut u64) {
    for _ in 0..count {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        poke(path, (*seed >> 33) % size, &[0x55]);
    }
}

fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("realms-verity-compat-")
        .tempdir()
        .unwrap()
}

/// check_root_hash: format, root hash and salt as expected, verify, then a corrupted data or
/// hash device fails verification; with and without a superblock and a root hash file.
/// `one_device`: the hash area in the data file at this offset.
/// One line of the script's table: block size, expected root hash, salt, hash type, algorithm.
type RootCase = (u32, &'static str, &'static str, u32, &'static str);

fn check_root_hash(tool: Tool, dir: &Path, case: RootCase, one_device: Option<u64>) {
    let (block, expected, salt, version, hash) = case;
    let img = dir.join("verity-data");
    let img_hash = dir.join("verity-hash");
    let root_file = dir.join("verity-data.roothash");
    let (data_size, devices) = match one_device {
        Some(offset) => (
            offset + 1024 * 1024,
            vec![
                img.clone().into_os_string(),
                img.clone().into_os_string(),
                format!("--hash-offset={offset}").into(),
                format!("--data-blocks={}", offset / u64::from(block)).into(),
            ],
        ),
        None => (
            8192 * 1024,
            vec![
                img.clone().into_os_string(),
                img_hash.clone().into_os_string(),
            ],
        ),
    };
    for root_as_file in [true, false] {
        for sb in [true, false] {
            let mut format_params = vec![
                format!("--format={version}"),
                format!("--data-block-size={block}"),
                format!("--hash-block-size={block}"),
                format!("--hash={hash}"),
                format!("--salt={salt}"),
            ];
            let mut verify_params = Vec::new();
            if !sb {
                format_params.push("--no-superblock".into());
                verify_params = format_params.clone();
            }
            let mut root_arg = vec![expected.to_string()];
            if root_as_file {
                fs::write(&root_file, expected).unwrap();
                let opt = format!("--root-hash-file={}", root_file.display());
                format_params.push(opt.clone());
                verify_params.push(opt);
                root_arg.clear();
            }
            for fail in ["data", "hash"] {
                let label = format!(
                    "V{version}(sb={sb} root_hash_as_file={root_as_file}) {hash} block size {block}, {fail} corruption, one device {one_device:?}"
                );
                zeros(&img, data_size);
                let _ = fs::remove_file(&img_hash);
                let out = succeeds(
                    tool,
                    tool.cmd("format").args(&devices).args(&format_params),
                    &label,
                );
                assert_eq!(field(&out, "Root hash"), expected, "{tool:?}: {label}");
                assert_eq!(field(&out, "Salt"), salt, "{tool:?}: {label}");
                let verify = || {
                    let mut cmd = tool.cmd("verify");
                    cmd.args(&devices[..2])
                        .args(&root_arg)
                        .args(&devices[2..])
                        .args(&verify_params);
                    cmd
                };
                succeeds(tool, &mut verify(), &label);
                match fail {
                    "data" => poke(&img, 3456, &[0xa5; 8]),
                    _ if one_device.is_some() => poke(&img, 8193 + u64::from(version), &[0xa5; 8]),
                    _ => poke(&img_hash, 8193, &[0xa5; 8]),
                }
                fails(tool, &mut verify(), &format!("userspace check: {label}"));
            }
        }
    }
}

/// The script's two tables: separate devices, then the hash area in the data file.
#[test]
fn compat_root_hashes_of_cryptsetups_tests() {
    let cases: [RootCase; 7] = [
        (
            512,
            "9de18652fe74edfb9b805aaed72ae2aa48f94333f1ba5c452ac33b1c39325174",
            SALT,
            1,
            "sha256",
        ),
        (
            1024,
            "54d92778750495d1f80832b486ebd007617d746271511bbf0e295e143da2b3df",
            SALT,
            1,
            "sha256",
        ),
        (
            4096,
            "e522df0f97da4febb882ac40f30b37dc0b444bf6df418929463fa25280f09d5c",
            SALT,
            1,
            "sha256",
        ),
        (
            4096,
            "cbbf4ebd004ef65e29b935bb635a39cf754d677f3fa10b0126da725bbdf10f7d",
            SALT,
            0,
            "sha256",
        ),
        (
            4096,
            "ef29c902d87350f1da4bfa536e16cebc162a909bf89abe448b81ec500d4fb9bf",
            "-",
            1,
            "sha256",
        ),
        (
            1024,
            "d0e9163ca8844aaa2e88fe5265a8c5d9ee494a99",
            SALT,
            1,
            "sha1",
        ),
        (
            1024,
            "73509e8e868be6b8ac939817a98a3d35121413b2",
            "dadada",
            1,
            "sha1",
        ),
    ];
    for tool in Tool::both() {
        let dir = tempdir();
        for one_device in [None, Some(8_388_608)] {
            for case in cases {
                check_root_hash(tool, dir.path(), case, one_device);
            }
        }
    }
}

/// check_root_hash_fail, userspace part: a wrong root hash fails, with FEC too.
#[test]
fn compat_wrong_root_hash_fails_with_and_without_fec() {
    let bad = "abcdef0000000000000000000000000000000000000000000000000000000000";
    for tool in Tool::both() {
        let dir = tempdir();
        let (img, hash, fec) = (
            dir.path().join("d"),
            dir.path().join("h"),
            dir.path().join("f"),
        );
        zeros(&img, 8192 * 1024);
        let out = succeeds(
            tool,
            tool.cmd("format")
                .arg(&img)
                .arg(&hash)
                .arg(format!("--fec-device={}", fec.display()))
                .args(["--fec-roots=2", "--hash=sha256"]),
            "format with FEC",
        );
        let root = field(&out, "Root hash");
        succeeds(
            tool,
            tool.cmd("verify").arg(&img).arg(&hash).arg(&root),
            "good root",
        );
        fails(
            tool,
            tool.cmd("verify").arg(&img).arg(&hash).arg(bad),
            "bad root",
        );
        fails(
            tool,
            tool.cmd("verify")
                .arg(&img)
                .arg(&hash)
                .arg(bad)
                .arg(format!("--fec-device={}", fec.display()))
                .arg("--fec-roots=2"),
            "bad root with FEC",
        );
    }
}

/// checkOffsetBug: hash offsets past 2 GiB (and past 4 GiB) in a sparse file.
#[test]
fn compat_hash_offset_bigger_than_2g_works() {
    for tool in Tool::both() {
        let dir = tempdir();
        let img = dir.path().join("img");
        for (size, offset, blocks) in [
            (3_000_000_000u64, 2_499_997_696u64, 256),
            (10_000_000_000, 8_000_000_000, 128),
        ] {
            zeros(&img, size);
            succeeds(
                tool,
                tool.cmd("format")
                    .arg(&img)
                    .arg(&img)
                    .arg(format!("--data-blocks={blocks}"))
                    .arg(format!("--hash-offset={offset}")),
                &format!("hash offset {offset}"),
            );
        }
    }
}

/// checkOverlapBug: data, hash and FEC areas in one file must not overlap.
#[test]
fn compat_overlap_detection() {
    for tool in Tool::both() {
        let dir = tempdir();
        let img = dir.path().join("img");
        let img_hash = dir.path().join("hash");
        let format = |extra: &[String]| {
            let mut cmd = tool.cmd("format");
            cmd.arg(&img).arg(&img).args(extra);
            cmd
        };
        zeros(&img, 2_097_152);
        fails(
            tool,
            &mut format(&["--hash-offset=1433600".into()]),
            "no --data-blocks",
        );
        // (hash offset, data blocks, block size, whether it overlaps)
        for (offset, blocks, bs, overlaps) in [
            (1_433_600u64, 350u64, 4096u64, false),
            (1_228_800, 350, 4096, true),
            (0, 350, 4096, true),
        ] {
            zeros(&img, 2_097_152);
            let mut cmd = format(&[
                format!("--data-block-size={bs}"),
                format!("--hash-block-size={bs}"),
                format!("--data-blocks={blocks}"),
                format!("--hash-offset={offset}"),
            ]);
            if overlaps {
                fails(tool, &mut cmd, &format!("data/hash overlap at {offset}"));
            } else {
                succeeds(tool, &mut cmd, &format!("hash offset {offset}"));
            }
        }
        // FEC in the data file over the data.
        zeros(&img, 2_097_152);
        fails(
            tool,
            tool.cmd("format")
                .arg(&img)
                .arg(&img_hash)
                .args(["--data-block-size=4096", "--hash-block-size=4096"])
                .args(["--data-blocks=350", "--fec-offset=1228800"])
                .arg(format!("--fec-device={}", img.display())),
            "data/FEC overlap",
        );
        // FEC after the data but over the hash area.
        zeros(&img, 10_240_000);
        let fec = |cmd: &mut Command| {
            cmd.args(["--data-block-size=512", "--hash-block-size=512"])
                .args(["--data-blocks=400", "--fec-offset=256512"])
                .arg(format!("--fec-device={}", img.display()));
        };
        let mut separate = tool.cmd("format");
        separate.arg(&img).arg(&img_hash);
        fec(&mut separate);
        succeeds(tool, &mut separate, "FEC after the data");
        let hash_size = fs::metadata(&img_hash).unwrap().len();
        assert!(256_000 + hash_size > 256_512);
        let mut one = tool.cmd("format");
        one.arg(&img).arg(&img).arg("--hash-offset=256000");
        fec(&mut one);
        fails(tool, &mut one, "hash/FEC overlap");
    }
}

/// The files of a FEC case: data, hash, FEC (possibly all one file).
struct FecFiles {
    data: PathBuf,
    hash: PathBuf,
    fec: PathBuf,
}

/// check_fec and checkUserSpaceRepair, userspace part: format with FEC, corrupt some bytes of
/// the data, and verification with FEC must succeed (and `realms verity repair` restore the
/// data); with the whole data overwritten it must fail.
#[allow(clippy::too_many_arguments)]
fn check_fec(
    tool: Tool,
    files: &FecFiles,
    block: u64,
    data_blocks: u64,
    device_blocks: u64,
    hash_offset: u64,
    fec_offset: u64,
    roots: u32,
    corrupted: u64,
    superblock: bool,
    seed: &mut u64,
) {
    zeros(&files.data, block * device_blocks);
    let mut params = vec![
        format!("--data-block-size={block}"),
        format!("--hash-block-size={block}"),
        format!("--fec-roots={roots}"),
        format!("--salt={DEV_SALT}"),
        format!("--fec-device={}", files.fec.display()),
    ];
    if data_blocks != device_blocks {
        params.push(format!("--data-blocks={data_blocks}"));
    }
    if hash_offset != 0 {
        params.push(format!("--hash-offset={hash_offset}"));
    }
    if fec_offset != 0 {
        params.push(format!("--fec-offset={fec_offset}"));
    }
    if !superblock {
        params.push("--no-superblock".into());
    }
    let label = format!("{tool:?}: {params:?}, {corrupted} corrupted bytes");
    let mut format = tool.cmd("format");
    format.arg(&files.data).arg(&files.hash).args(&params);
    if superblock {
        format.arg(format!("--uuid={DEV_UUID}"));
    }
    let root = field(&succeeds(tool, &mut format, &label), "Root hash");
    let original = fs::read(&files.data).unwrap();
    let data_size = block * data_blocks;
    corrupt_device(&files.data, data_size, corrupted, seed);
    let verify = |action: &str| {
        let mut cmd = tool.cmd(action);
        cmd.arg(&files.data)
            .arg(&files.hash)
            .arg(&root)
            .args(&params);
        cmd
    };
    succeeds(
        tool,
        &mut verify("verify"),
        &format!("correctable: {label}"),
    );
    if tool == Tool::Realms {
        succeeds(tool, &mut verify("repair"), &format!("repair: {label}"));
        assert!(
            fs::read(&files.data).unwrap() == original,
            "repair: {label}"
        );
    }
    // Beyond repair: the data overwritten with noise (the script's /dev/urandom).
    let mut x = *seed | 1;
    let noise: Vec<u8> = (0..data_size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    poke(&files.data, 0, &noise);
    fails(
        tool,
        &mut verify("verify"),
        &format!("uncorrectable: {label}"),
    );
}

#[test]
fn compat_fec_corrects_in_userspace() {
    for tool in Tool::both() {
        let dir = tempdir();
        let p = |name: &str| dir.path().join(name);
        let one = FecFiles {
            data: p("img"),
            hash: p("img"),
            fec: p("img"),
        };
        let three = FecFiles {
            data: p("img"),
            hash: p("hash"),
            fec: p("fec"),
        };
        let two = FecFiles {
            data: p("img"),
            hash: p("img"),
            fec: p("fec"),
        };
        let mut seed = 43u64;
        for index in 1..=4u64 {
            let roots = |seed: &mut u64| {
                *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                2 + (*seed >> 33) as u32 % 23
            };
            let n = index * 4;
            // check_fec's cases: (files, block, data blocks, device blocks, hash offset,
            // FEC offset, superblock)
            let cases: [(&FecFiles, u64, u64, u64, u64, u64, bool); 9] = [
                (&one, 4096, 30, 150, 163_840, 409_600, true),
                (&one, 512, 500, 50_000, 2_457_600, 4_915_200, false),
                (&one, 512, 500, 50_000, 2_457_600, 4_915_200, true),
                (&one, 4096, 64, 6250, 4_194_304, 8_388_608, false),
                (&one, 4096, 64, 6250, 4_194_304, 8_388_608, true),
                (&three, 4096, 30, 30, 0, 0, false),
                (&three, 4096, 35, 35, 0, 0, true),
                (&three, 512, 2000, 2000, 0, 0, true),
                (&three, 1024, 2000, 2000, 0, 0, true),
            ];
            for (files, block, data, device, hash_offset, fec_offset, sb) in cases {
                let r = roots(&mut seed);
                check_fec(
                    tool,
                    files,
                    block,
                    data,
                    device,
                    hash_offset,
                    fec_offset,
                    r,
                    n,
                    sb,
                    &mut seed,
                );
            }
        }
        // checkUserSpaceRepair's cases: (data blocks or whole file, block, roots, hash
        // offset, FEC offset, files, corrupted bytes).
        type RepairCase<'a> = (Option<u64>, u64, u32, u64, u64, &'a FecFiles, u64);
        let repair_cases: [RepairCase; 6] = [
            (None, 512, 2, 0, 0, &three, 100),
            (Some(400), 512, 2, 256_000, 0, &two, 50),
            (Some(500), 512, 2, 2_457_600, 4_915_200, &one, 1),
            (None, 4096, 2, 0, 0, &three, 10),
            (Some(400), 4096, 2, 2_048_000, 0, &two, 1),
            (Some(500), 4096, 2, 2_457_600, 4_915_200, &one, 2),
        ];
        for (blocks, block, roots, hash_offset, fec_offset, files, n) in repair_cases {
            // The script's image is 50000 sectors of 512 bytes.
            let device = 50_000 * 512 / block;
            let data = blocks.unwrap_or(device);
            check_fec(
                tool,
                files,
                block,
                data,
                device,
                hash_offset,
                fec_offset,
                roots,
                n,
                true,
                &mut seed,
            );
        }
    }
}
