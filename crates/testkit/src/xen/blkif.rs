//! A minimal blkif frontend's ring, enough to send a block backend (QEMU's `xen-disk`)
//! single-page reads and writes: the shared ring in a grant page of the guest's memory,
//! data pages granted by reference, the event channel kicked after each request.
//!
//! Layout (Xen's public `io/ring.h` and `io/blkif.h`, 64-bit ABI, `x86_64-abi`): the page
//! starts with four u32 indexes (`req_prod`, `req_event`, `rsp_prod`, `rsp_event`), 48
//! bytes of padding, then the entries at offset 64, each 112 bytes (a request's size, the
//! larger of the two); a one-page ring has 32 of them (the largest power of two that
//! fits). A request is `operation` u8, `nr_segments` u8, `handle` u16, 4 padding bytes,
//! `id` u64, `sector_number` u64, then segments of 8 bytes (`gref` u32, `first_sect` u8,
//! `last_sect` u8, 2 padding bytes). A response is `id` u64, `operation` u8, a padding
//! byte, `status` i16.

use std::io;
use std::time::{Duration, Instant};

use super::{EventChannel, GuestMemory};

/// `BLKIF_OP_READ`.
pub const BLKIF_OP_READ: u8 = 0;
/// `BLKIF_OP_WRITE`.
pub const BLKIF_OP_WRITE: u8 = 1;
/// `BLKIF_RSP_OKAY`.
pub const BLKIF_RSP_OKAY: i16 = 0;
/// Bytes of a sector in blkif requests (whatever the disk's own sector size).
pub const SECTOR: u64 = 512;

const REQ_PROD: usize = 0;
const REQ_EVENT: usize = 4;
const RSP_PROD: usize = 8;
const RSP_EVENT: usize = 12;
const ENTRIES_AT: usize = 64;
const ENTRY_SIZE: usize = 112;
const ENTRIES: u32 = 32;

/// One request of one whole page: `operation` on the 8 sectors from `sector`, data in
/// grant `gref`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageRequest {
    /// [`BLKIF_OP_READ`] or [`BLKIF_OP_WRITE`].
    pub operation: u8,
    /// Chosen by the frontend, echoed in the response.
    pub id: u64,
    /// The first sector (512 bytes each).
    pub sector: u64,
    /// The grant (page of the guest's memory) holding the data.
    pub gref: u32,
}

/// A response from the backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Response {
    /// The request's id.
    pub id: u64,
    /// The request's operation.
    pub operation: u8,
    /// [`BLKIF_RSP_OKAY`], or negative on error.
    pub status: i16,
}

/// The frontend's side of a one-page blkif ring in grant `ring_ref` of `memory`.
#[derive(Debug)]
pub struct BlkifRing {
    memory: GuestMemory,
    channel: EventChannel,
    ring_ref: u32,
    req_prod: u32,
    rsp_cons: u32,
}

impl BlkifRing {
    /// Initialises the ring page (zeroed, both event thresholds at 1, as `SHARED_RING_INIT`
    /// and `FRONT_RING_INIT` leave it) in grant `ring_ref` of `memory`, kicking the backend
    /// on `channel`. Do it before publishing `ring-ref`.
    pub fn init(memory: GuestMemory, ring_ref: u32, channel: EventChannel) -> Self {
        memory.write(ring_ref, 0, &[0; super::PAGE_SIZE]);
        memory.store_u32(ring_ref, REQ_EVENT, 1);
        memory.store_u32(ring_ref, RSP_EVENT, 1);
        BlkifRing {
            memory,
            channel,
            ring_ref,
            req_prod: 0,
            rsp_cons: 0,
        }
    }

    /// The guest's memory (the data pages are in it).
    pub fn memory(&self) -> &GuestMemory {
        &self.memory
    }

    /// Puts `request` on the ring, publishes it and kicks the backend.
    pub fn submit(&mut self, request: PageRequest) -> io::Result<()> {
        let at = ENTRIES_AT + (self.req_prod % ENTRIES) as usize * ENTRY_SIZE;
        let mut entry = [0u8; ENTRY_SIZE];
        entry[0] = request.operation;
        entry[1] = 1; // one segment
        entry[8..16].copy_from_slice(&request.id.to_le_bytes());
        entry[16..24].copy_from_slice(&request.sector.to_le_bytes());
        entry[24..28].copy_from_slice(&request.gref.to_le_bytes());
        entry[28] = 0; // first sector of the page
        entry[29] = 7; // last: the whole 4 KiB page
        self.memory.write(self.ring_ref, at, &entry);
        self.req_prod = self.req_prod.wrapping_add(1);
        // Release: the entry is visible before the index that publishes it.
        self.memory
            .store_u32(self.ring_ref, REQ_PROD, self.req_prod);
        self.channel.kick()
    }

    /// Waits (`limit` at most) for the next response; `None` if none came.
    pub fn response(&mut self, limit: Duration) -> io::Result<Option<Response>> {
        #[allow(clippy::disallowed_methods)] // a test-side wait
        let give_up = xsio_core::deadline(Instant::now(), limit);
        loop {
            let prod = self.memory.load_u32(self.ring_ref, RSP_PROD);
            if prod != self.rsp_cons {
                let at = ENTRIES_AT + (self.rsp_cons % ENTRIES) as usize * ENTRY_SIZE;
                let bytes = self.memory.read(self.ring_ref, at, 16);
                self.rsp_cons = self.rsp_cons.wrapping_add(1);
                // Ask to be notified of the next response (RING_FINAL_CHECK_FOR_RESPONSES).
                self.memory
                    .store_u32(self.ring_ref, RSP_EVENT, self.rsp_cons.wrapping_add(1));
                return Ok(Some(Response {
                    id: u64::from_le_bytes(bytes[0..8].try_into().unwrap()),
                    operation: bytes[8],
                    status: i16::from_le_bytes(bytes[10..12].try_into().unwrap()),
                }));
            }
            #[allow(clippy::disallowed_methods)]
            let left = match give_up {
                Some(g) => g.saturating_duration_since(Instant::now()),
                None => Duration::from_secs(1),
            };
            if left.is_zero() {
                return Ok(None);
            }
            // A notify, or a short look again should one be missed.
            self.channel.wait(left.min(Duration::from_millis(50)))?;
        }
    }
}
