//! Forward error correction in the layout the kernel's dm-verity reads and veritysetup writes.
//!
//! The covered area is the data blocks followed by the hash device's blocks from the start of
//! the tree (after the superblock) to the end of the hash device (or to the FEC area, when FEC
//! lives in the hash device), all in blocks of the (common) block size. It is cut into `rounds =
//! ceil(blocks / (255 - roots))` rounds; codeword `b` of round `n` takes byte `b` of blocks
//! `n, rounds + n, 2 * rounds + n, ...` (blocks past the end read as zeros), so one damaged block
//! costs every codeword of its round only one symbol. The FEC area holds, round after round and
//! codeword after codeword, each codeword's `roots` parity bytes.

use std::collections::BTreeMap;

use rayon::prelude::*;

use crate::error::{Device, Error, Result};
use crate::io::{ReadAt, WriteAt};
use crate::layout::TreeLayout;
use crate::params::Params;
use crate::rs::{self, Encoder};

/// The fewest parity bytes per codeword veritysetup and the kernel accept.
pub const MIN_ROOTS: u32 = 2;
/// The most parity bytes per codeword veritysetup and the kernel accept.
pub const MAX_ROOTS: u32 = 24;
/// veritysetup's default `--fec-roots`.
pub const DEFAULT_ROOTS: u32 = 2;

/// Bytes of message blocks one task reads at a time.
const BATCH_BYTES: u64 = 8 << 20;

/// veritysetup's FEC options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FecParams {
    /// `--fec-roots`: parity bytes per codeword, 2 to 24.
    pub roots: u32,
    /// `--fec-offset`: where the FEC area starts in the FEC device, a multiple of 512.
    pub offset: u64,
}

impl Default for FecParams {
    fn default() -> Self {
        FecParams {
            roots: DEFAULT_ROOTS,
            offset: 0,
        }
    }
}

/// Where the FEC area and the area it covers lie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FecLayout {
    /// Parity bytes per codeword.
    pub roots: u32,
    /// The block size (data and hash blocks must have the same size).
    pub block_size: u64,
    /// Data blocks covered (from the start of the data device).
    pub data_blocks: u64,
    /// Byte offset in the hash device of the first covered hash block (the tree's start).
    pub hash_start: u64,
    /// Hash device blocks covered.
    pub hash_blocks: u64,
    /// Rounds of `block_size` codewords.
    pub rounds: u64,
    /// Byte offset of the FEC area in the FEC device.
    pub offset: u64,
    /// Size of the FEC area in bytes.
    pub size: u64,
}

impl FecLayout {
    /// Blocks covered, data and hash (the kernel's `fec_blocks`).
    pub fn blocks(&self) -> u64 {
        self.data_blocks + self.hash_blocks
    }

    /// The FEC area's start in blocks (the kernel's `fec_start`).
    pub fn start_block(&self) -> u64 {
        self.offset / self.block_size
    }

    /// Message symbols per codeword.
    fn message_len(&self) -> u64 {
        rs::N as u64 - u64::from(self.roots)
    }

    /// Where covered block `v` lies: its device and byte offset.
    fn locate(&self, v: u64) -> (Device, u64) {
        if v < self.data_blocks {
            (Device::Data, v * self.block_size)
        } else {
            (
                Device::Hash,
                self.hash_start + (v - self.data_blocks) * self.block_size,
            )
        }
    }

    /// How many of round `n`'s message blocks exist (the rest are zeros).
    fn present(&self, n: u64) -> usize {
        let total = self.blocks();
        (total.saturating_sub(n).div_ceil(self.rounds)).min(self.message_len()) as usize
    }
}

fn too_large() -> Error {
    Error::TooLarge {
        what: "the FEC area",
    }
}

/// The FEC layout for a tree `layout` on a hash device of `hash_size` bytes; `same_device` when
/// the FEC area is in the hash device itself (the covered hash blocks then end at the FEC area).
pub fn fec_layout(
    params: &Params,
    layout: &TreeLayout,
    hash_size: u64,
    same_device: bool,
    fec: &FecParams,
) -> Result<FecLayout> {
    if !(MIN_ROOTS..=MAX_ROOTS).contains(&fec.roots) {
        return Err(Error::FecRoots { roots: fec.roots });
    }
    if params.data_block_size != params.hash_block_size {
        return Err(Error::FecBlockSizes {
            data: params.data_block_size,
            hash: params.hash_block_size,
        });
    }
    if !fec.offset.is_multiple_of(512) {
        return Err(Error::FecOffset { offset: fec.offset });
    }
    let bs = layout.data_block_size;
    let tree_block = layout.tree_offset / bs;
    let end = if same_device { fec.offset } else { hash_size };
    if same_device && fec.offset < layout.hash_end {
        return Err(Error::FecOverlap {
            offset: fec.offset,
            hash_end: layout.hash_end,
        });
    }
    let end_blocks = end / bs;
    let hash_blocks = if end_blocks == 0 {
        0
    } else {
        end_blocks.checked_sub(tree_block).ok_or(Error::TooSmall {
            device: Device::Hash,
            size: hash_size,
            needed: layout.hash_end,
        })?
    };
    if tree_block + hash_blocks < layout.hash_end / bs {
        return Err(Error::TooSmall {
            device: Device::Hash,
            size: hash_size,
            needed: layout.hash_end,
        });
    }
    let total = layout
        .data_blocks
        .checked_add(hash_blocks)
        .ok_or_else(too_large)?;
    let rsn = rs::N as u64 - u64::from(fec.roots);
    let rounds = total.div_ceil(rsn);
    let size = rounds
        .checked_mul(bs)
        .and_then(|s| s.checked_mul(u64::from(fec.roots)))
        .ok_or_else(too_large)?;
    fec.offset.checked_add(size).ok_or_else(too_large)?;
    Ok(FecLayout {
        roots: fec.roots,
        block_size: bs,
        data_blocks: layout.data_blocks,
        hash_start: layout.tree_offset,
        hash_blocks,
        rounds,
        offset: fec.offset,
        size,
    })
}

/// A batch of consecutive rounds read into memory: block `i` of round `first + r` is at
/// `((i * count) + r) * block_size`.
struct Batch {
    first: u64,
    count: u64,
    blocks: Vec<u8>,
}

impl Batch {
    fn stride(&self, layout: &FecLayout) -> usize {
        (self.count * layout.block_size) as usize
    }

    fn round(&self, layout: &FecLayout, r: u64) -> &[u8] {
        &self.blocks[(r * layout.block_size) as usize..]
    }
}

/// Rounds per batch.
fn batch_rounds(layout: &FecLayout) -> u64 {
    (BATCH_BYTES / (layout.message_len() * layout.block_size)).max(1)
}

/// Reads covered blocks `v..v + count` (all below `layout.blocks()`) into `buf`.
fn read_covered<D, H>(
    data: &D,
    hash: &H,
    layout: &FecLayout,
    mut v: u64,
    count: u64,
    buf: &mut [u8],
) -> Result<()>
where
    D: ReadAt + ?Sized,
    H: ReadAt + ?Sized,
{
    let bs = layout.block_size as usize;
    let mut done = 0usize;
    let end = v + count;
    while v < end {
        let (device, offset) = layout.locate(v);
        let n = if device == Device::Data {
            (end.min(layout.data_blocks) - v) as usize
        } else {
            (end - v) as usize
        };
        let out = &mut buf[done * bs..(done + n) * bs];
        let result = match device {
            Device::Data => data.read_exact_at(out, offset),
            _ => hash.read_exact_at(out, offset),
        };
        result.map_err(Error::read(device, offset))?;
        done += n;
        v += n as u64;
    }
    Ok(())
}

/// Reads the message blocks of rounds `first..first + count`.
fn read_batch<D, H>(
    data: &D,
    hash: &H,
    layout: &FecLayout,
    first: u64,
    count: u64,
    buf: Vec<u8>,
) -> Result<Batch>
where
    D: ReadAt + ?Sized,
    H: ReadAt + ?Sized,
{
    let bs = layout.block_size;
    let run = (count * bs) as usize;
    let mut blocks = buf;
    blocks.clear();
    blocks.resize(layout.message_len() as usize * run, 0);
    let total = layout.blocks();
    for i in 0..layout.message_len() {
        let v = i * layout.rounds + first;
        let valid = count.min(total.saturating_sub(v));
        if valid > 0 {
            let at = i as usize * run;
            read_covered(
                data,
                hash,
                layout,
                v,
                valid,
                &mut blocks[at..at + (valid * bs) as usize],
            )?;
        }
    }
    Ok(Batch {
        first,
        count,
        blocks,
    })
}

/// The parity of every codeword of a batch, round after round.
fn batch_parity(encoder: &Encoder, layout: &FecLayout, batch: &Batch) -> Vec<u8> {
    let bs = layout.block_size as usize;
    let per_round = bs * layout.roots as usize;
    let mut out = vec![0u8; batch.count as usize * per_round];
    for (r, parity) in out.chunks_exact_mut(per_round).enumerate() {
        let present = layout.present(batch.first + r as u64);
        encoder.encode(
            batch.round(layout, r as u64),
            batch.stride(layout),
            present,
            bs,
            parity,
        );
    }
    out
}

/// The batches of the FEC area: (first round, rounds).
fn batches(layout: &FecLayout) -> Vec<(u64, u64)> {
    let per = batch_rounds(layout);
    (0..layout.rounds.div_ceil(per))
        .map(|b| (b * per, per.min(layout.rounds - b * per)))
        .collect()
}

/// Writes the FEC area for the covered blocks, exactly as veritysetup does.
pub fn encode<D, H, F>(data: &D, hash: &H, fec: &F, layout: &FecLayout) -> Result<()>
where
    D: ReadAt + ?Sized,
    H: ReadAt + ?Sized,
    F: WriteAt + ?Sized,
{
    // Grown first: when the FEC area is in the hash device past the end of the tree, the gap
    // between them is covered and must read as the zeros it will hold (veritysetup 2.6.1 fails
    // there instead: "Failed to read RS block").
    let end = layout.offset + layout.size;
    fec.grow_to(end)
        .map_err(Error::write_to(Device::Fec, end))?;
    let encoder = Encoder::new(layout.roots as usize);
    let per_round = layout.block_size * u64::from(layout.roots);
    batches(layout)
        .into_par_iter()
        .try_for_each_init(Vec::new, |buf, (first, count)| {
            let batch = read_batch(data, hash, layout, first, count, std::mem::take(buf))?;
            let parity = batch_parity(&encoder, layout, &batch);
            let offset = layout.offset + first * per_round;
            fec.write_all_at(&parity, offset)
                .map_err(Error::write_to(Device::Fec, offset))?;
            *buf = batch.blocks;
            Ok::<(), Error>(())
        })
}

/// What decoding the FEC area found: the corrected blocks and parity bytes, in memory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Corrections {
    /// Symbols (bytes) corrected: veritysetup's count of "repairable errors".
    pub symbols: u64,
    /// Corrected data blocks: byte offset in the data device, and the corrected block.
    pub data: BTreeMap<u64, Vec<u8>>,
    /// Corrected hash blocks: byte offset in the hash device, and the corrected block.
    pub hash: BTreeMap<u64, Vec<u8>>,
    /// Corrected parity bytes: byte offset in the FEC device, and the corrected byte.
    pub parity: BTreeMap<u64, u8>,
}

impl Corrections {
    /// Whether nothing needed correcting.
    pub fn is_empty(&self) -> bool {
        self.symbols == 0
    }

    fn merge(&mut self, other: Corrections) {
        self.symbols += other.symbols;
        self.data.extend(other.data);
        self.hash.extend(other.hash);
        self.parity.extend(other.parity);
    }
}

/// Decodes every codeword whose stored parity disagrees with the covered blocks; returns the
/// corrections, or [`Error::FecUncorrectable`] naming the first round beyond the code's reach.
pub fn decode<D, H, F>(data: &D, hash: &H, fec: &F, layout: &FecLayout) -> Result<Corrections>
where
    D: ReadAt + ?Sized,
    H: ReadAt + ?Sized,
    F: ReadAt + ?Sized,
{
    let fec_size = fec.size().map_err(Error::read(Device::Fec, 0))?;
    let end = layout.offset + layout.size;
    if fec_size < end {
        return Err(Error::TooSmall {
            device: Device::Fec,
            size: fec_size,
            needed: end,
        });
    }
    let encoder = Encoder::new(layout.roots as usize);
    let found = batches(layout)
        .into_par_iter()
        .map(|(first, count)| {
            let batch = read_batch(data, hash, layout, first, count, Vec::new())?;
            let computed = batch_parity(&encoder, layout, &batch);
            let offset = layout.offset + first * layout.block_size * u64::from(layout.roots);
            let mut stored = vec![0u8; computed.len()];
            fec.read_exact_at(&mut stored, offset)
                .map_err(Error::read(Device::Fec, offset))?;
            correct_batch(layout, &batch, &computed, &stored, offset)
        })
        .collect::<Result<Vec<_>>>()?;
    let mut all = Corrections::default();
    for c in found {
        all.merge(c);
    }
    Ok(all)
}

/// Corrects the codewords of a batch whose parity does not match.
fn correct_batch(
    layout: &FecLayout,
    batch: &Batch,
    computed: &[u8],
    stored: &[u8],
    parity_offset: u64,
) -> Result<Corrections> {
    let roots = layout.roots as usize;
    let bs = layout.block_size as usize;
    let k = layout.message_len() as usize;
    let stride = batch.stride(layout);
    let mut out = Corrections::default();
    // Corrected blocks by covered index, copied from the batch when first touched.
    let mut blocks: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    for (w, (c, s)) in computed
        .chunks_exact(roots)
        .zip(stored.chunks_exact(roots))
        .enumerate()
    {
        if c == s {
            continue;
        }
        let (r, b) = (w / bs, w % bs);
        let round = batch.first + r as u64;
        let present = layout.present(round);
        let message = batch.round(layout, r as u64);
        let mut codeword = [0u8; rs::N];
        for (i, sym) in codeword[..k].iter_mut().enumerate().take(present) {
            *sym = message[i * stride + b];
        }
        codeword[k..].copy_from_slice(s);
        let original = codeword;
        let fixed = rs::decode(&mut codeword, roots).ok_or(Error::FecUncorrectable {
            round,
            codeword: b as u64,
        })?;
        out.symbols += fixed as u64;
        for (pos, (&new, &old)) in codeword.iter().zip(&original).enumerate() {
            if new == old {
                continue;
            }
            if pos >= k {
                let at = parity_offset + (w * roots + pos - k) as u64;
                out.parity.insert(at, new);
            } else if pos < present {
                let v = pos as u64 * layout.rounds + round;
                let block = blocks
                    .entry(v)
                    .or_insert_with(|| message[pos * stride..pos * stride + bs].to_vec());
                block[b] = new;
            } else {
                // A "correction" of a block past the end, which is zeros by definition: the
                // codeword is damaged beyond what the code can tell.
                return Err(Error::FecUncorrectable {
                    round,
                    codeword: b as u64,
                });
            }
        }
    }
    for (v, block) in blocks {
        match layout.locate(v) {
            (Device::Data, offset) => out.data.insert(offset, block),
            (_, offset) => out.hash.insert(offset, block),
        };
    }
    Ok(out)
}

/// A device read through a set of corrected blocks.
#[derive(Debug)]
pub(crate) struct Patched<'a, D: ?Sized> {
    pub(crate) inner: &'a D,
    /// Corrected blocks by byte offset; all of one size.
    pub(crate) blocks: &'a BTreeMap<u64, Vec<u8>>,
    pub(crate) block_size: u64,
}

impl<D: ReadAt + ?Sized> ReadAt for Patched<'_, D> {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        self.inner.read_exact_at(buf, offset)?;
        let end = offset + buf.len() as u64;
        let from = offset.saturating_sub(self.block_size - 1);
        for (&at, block) in self.blocks.range(from..end) {
            let lo = at.max(offset);
            let hi = (at + block.len() as u64).min(end);
            if lo < hi {
                buf[(lo - offset) as usize..(hi - offset) as usize]
                    .copy_from_slice(&block[(lo - at) as usize..(hi - at) as usize]);
            }
        }
        Ok(())
    }

    fn size(&self) -> std::io::Result<u64> {
        self.inner.size()
    }

    fn identity(&self) -> Option<(u64, u64)> {
        self.inner.identity()
    }
}
