//! The buffer that request heads going upstream are written into, one per
//! worker thread. Each head is split off it as it is finished, so a head
//! costs no allocation of its own: a head written into a new buffer cost
//! two (the buffer, and the count of its owners when it was frozen), and
//! two frees when it was done with.
//!
//! The buffer is taken in blocks; a block is freed, or reused in place,
//! once every head split off it has been dropped. A head lives until its
//! response head arrives (the copy kept for a resend), so a request that
//! waits long on the upstream holds the whole block its head is in (4 KiB,
//! where its own head was some hundred bytes), as a waiting request's
//! header values hold the block of the inbound read buffer they were
//! parsed from. A head larger than the room left takes a block of its own
//! size, and the heads after it are cut from that block while it lasts.

use std::cell::RefCell;

use bytes::{Bytes, BytesMut};

/// Bytes taken at a time: room for some tens of common heads.
const BLOCK: usize = 4096;

/// Less room than this left in the block, and the next head starts a new
/// one (or the old one again, if its heads are all gone).
const MIN_ROOM: usize = 1024;

thread_local! {
    static BUFFER: RefCell<BytesMut> = RefCell::new(BytesMut::new());
}

/// Runs `write` on this thread's buffer (empty), then takes what it wrote
/// out as one `Bytes`. `write` must not write another head itself.
pub fn write_head<R>(write: impl FnOnce(&mut BytesMut) -> R) -> (Bytes, R) {
    BUFFER.with_borrow_mut(|buffer| {
        // Empty unless a `write` before this one unwound half-way: its
        // bytes must not lead this head.
        buffer.clear();
        if buffer.capacity() < MIN_ROOM {
            buffer.reserve(BLOCK);
        }
        let written = write(buffer);
        (buffer.split().freeze(), written)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_follow_one_another_in_one_block() {
        let (first, ()) = write_head(|out| out.extend_from_slice(b"GET /a HTTP/1.1\r\n\r\n"));
        let (second, ()) = write_head(|out| out.extend_from_slice(b"GET /b HTTP/1.1\r\n\r\n"));
        assert_eq!(&first[..], b"GET /a HTTP/1.1\r\n\r\n");
        assert_eq!(&second[..], b"GET /b HTTP/1.1\r\n\r\n");
        assert_eq!(
            first.as_ptr_range().end,
            second.as_ptr(),
            "the second head starts where the first ends"
        );
    }

    #[test]
    fn a_head_larger_than_a_block_is_whole_and_the_next_is_whole_too() {
        let large = vec![b'x'; 3 * BLOCK];
        let (head, ()) = write_head(|out| out.extend_from_slice(&large));
        assert_eq!(&head[..], &large[..]);
        let (next, ()) = write_head(|out| out.extend_from_slice(b"next"));
        assert_eq!(&next[..], b"next");
        assert_eq!(&head[..], &large[..], "a head is not changed by the next");
    }

    #[test]
    fn a_write_that_unwound_leaves_nothing_before_the_next_head() {
        let unwound = std::panic::catch_unwind(|| {
            write_head(|out| {
                out.extend_from_slice(b"half a he");
                panic!("the writer failed");
            })
        });
        assert!(unwound.is_err());
        let (head, ()) = write_head(|out| out.extend_from_slice(b"whole"));
        assert_eq!(&head[..], b"whole");
    }

    #[test]
    fn what_write_returns_comes_back_with_the_head() {
        let (head, length) = write_head(|out| {
            out.extend_from_slice(b"abc");
            out.len()
        });
        assert_eq!((&head[..], length), (&b"abc"[..], 3));
    }
}
