//! Format, verify and repair with forward error correction: the hash tree decides what is
//! wrong, the Reed–Solomon parity what it should have been.
//!
//! Verification runs first without FEC. Only when it fails are the codewords decoded (those
//! whose parity disagrees), and the corrections are checked by verifying again through them,
//! so a report of corrected errors always means the corrected device matches the root hash.

use crate::error::{Corruption, Device, Error, Result};
use crate::fec::{self, Corrections, FecLayout, FecParams, Patched};
use crate::format::{FormatOutput, data_block_count, format};
use crate::io::{ReadAt, WriteAt};
use crate::layout::tree_layout;
use crate::params::Params;
use crate::verify::{resolve, verify};

/// What format with FEC produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FecFormatOutput {
    /// The hash area, as [`format()`] returns it.
    pub tree: FormatOutput,
    /// Where the FEC area went.
    pub fec: FecLayout,
}

/// Whether two devices are one file.
fn same_file<A: ReadAt + ?Sized, B: ReadAt + ?Sized>(a: &A, b: &B) -> bool {
    matches!((a.identity(), b.identity()), (Some(x), Some(y)) if x == y)
}

/// The FEC layout for resolved parameters (data block count known).
fn layout_for<H, F>(hash: &H, fec_device: &F, params: &Params, fec: &FecParams) -> Result<FecLayout>
where
    H: ReadAt + ?Sized,
    F: ReadAt + ?Sized,
{
    let data_blocks = params.data_blocks.ok_or(Error::NoDataBlocks)?;
    let tree = tree_layout(params, data_blocks)?;
    let hash_size = hash.size().map_err(Error::read(Device::Hash, 0))?;
    fec::fec_layout(params, &tree, hash_size, same_file(hash, fec_device), fec)
}

/// Formats like [`format()`], then writes the FEC area to `fec_device` (which may be the hash
/// or data file, at `fec.offset`), byte-identical to `veritysetup format --fec-device`.
pub fn format_with_fec<D, H, F>(
    data: &D,
    hash: &H,
    fec_device: &F,
    params: &Params,
    fec: &FecParams,
) -> Result<FecFormatOutput>
where
    D: ReadAt + ?Sized,
    H: WriteAt + ?Sized,
    F: WriteAt + ?Sized,
{
    // Refuse bad FEC parameters before anything is written.
    params.validate()?;
    let data_size = data.size().map_err(Error::read(Device::Data, 0))?;
    let blocks = data_block_count(params, data_size)?;
    let planned = tree_layout(params, blocks)?;
    fec::fec_layout(
        params,
        &planned,
        planned.hash_end,
        same_file(hash, fec_device),
        fec,
    )?;
    if same_file(data, fec_device) && fec.offset < planned.data_size() {
        return Err(Error::FecOverlap {
            offset: fec.offset,
            hash_end: planned.data_size(),
        });
    }
    let tree = format(data, hash, params)?;
    let layout = layout_for(hash, fec_device, &tree.params, fec)?;
    fec::encode(data, hash, fec_device, &layout)?;
    Ok(FecFormatOutput { tree, fec: layout })
}

/// What verification with FEC found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FecOutcome {
    /// The FEC area's layout.
    pub layout: FecLayout,
    /// The first failure without FEC (`None` when the device verified as it is).
    pub failure: Option<Corruption>,
    /// What FEC corrected (empty when nothing failed).
    pub corrections: Corrections,
}

/// Verifies like [`verify`]; when that fails, decodes the FEC area and verifies the device as
/// corrected. Succeeds when the device is intact or FEC can correct it (veritysetup's "Found N
/// repairable errors with FEC device"); nothing is written.
pub fn verify_with_fec<D, H, F>(
    data: &D,
    hash: &H,
    fec_device: &F,
    params: &Params,
    fec: &FecParams,
    root_hash: &[u8],
) -> Result<FecOutcome>
where
    D: ReadAt + ?Sized,
    H: ReadAt + ?Sized,
    F: ReadAt + ?Sized,
{
    let params = resolve(hash, params)?;
    let data_size = data.size().map_err(Error::read(Device::Data, 0))?;
    let params = Params {
        data_blocks: Some(data_block_count(&params, data_size)?),
        ..params
    };
    let layout = layout_for(hash, fec_device, &params, fec)?;
    let failure = match verify(data, hash, &params, root_hash) {
        Ok(()) => {
            return Ok(FecOutcome {
                layout,
                failure: None,
                corrections: Corrections::default(),
            });
        }
        Err(Error::Corrupt(c)) => c,
        Err(e) => return Err(e),
    };
    let corrections = fec::decode(data, hash, fec_device, &layout)?;
    let bs = layout.block_size;
    let patched_data = Patched {
        inner: data,
        blocks: &corrections.data,
        block_size: bs,
    };
    let patched_hash = Patched {
        inner: hash,
        blocks: &corrections.hash,
        block_size: bs,
    };
    verify(&patched_data, &patched_hash, &params, root_hash).map_err(|e| Error::FecUnrepaired {
        symbols: corrections.symbols,
        source: Box::new(e),
    })?;
    Ok(FecOutcome {
        layout,
        failure: Some(failure),
        corrections,
    })
}

/// Like [`verify_with_fec`], then writes the corrections back: the corrected data blocks, hash
/// blocks and parity bytes. The devices are verified again afterwards.
pub fn repair<D, H, F>(
    data: &D,
    hash: &H,
    fec_device: &F,
    params: &Params,
    fec: &FecParams,
    root_hash: &[u8],
) -> Result<FecOutcome>
where
    D: WriteAt + ?Sized,
    H: WriteAt + ?Sized,
    F: WriteAt + ?Sized,
{
    let outcome = verify_with_fec(data, hash, fec_device, params, fec, root_hash)?;
    let c = &outcome.corrections;
    for (&offset, block) in &c.data {
        data.write_all_at(block, offset)
            .map_err(Error::write_to(Device::Data, offset))?;
    }
    for (&offset, block) in &c.hash {
        hash.write_all_at(block, offset)
            .map_err(Error::write_to(Device::Hash, offset))?;
    }
    for (&offset, &byte) in &c.parity {
        fec_device
            .write_all_at(&[byte], offset)
            .map_err(Error::write_to(Device::Fec, offset))?;
    }
    if !c.is_empty() {
        verify(data, hash, params, root_hash)?;
    }
    Ok(outcome)
}
