//! Guest tier: a qemu (TCG) guest with device-mapper and a TPM, batched into as few boots as possible.
