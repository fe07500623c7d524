//! How much of the current thread's stack a synchronous hook call may use.
//!
//! A call on a fiber runs on the fiber's own stack, sized for the guest and
//! the host functions it calls. A synchronous call runs on the calling
//! thread's stack, below whatever the thread has already used, and a guest
//! that overruns a thread's stack aborts the process instead of failing
//! with kind `stack`. So a thread makes synchronous calls only once it has
//! declared how much room it keeps for them: the proxy workers do, and are
//! started with a stack that big plus [`FRAMES_ABOVE_CALLS`]; any other
//! thread (the main runtime's, tests', an embedder's) makes its calls on a
//! fiber.

use std::cell::Cell;

/// Stack the frames above a hook call take on a worker (tokio, hyper, the
/// handler, the chain): far more than they use, which is cheap, since a
/// thread's stack is only reserved address space until it is touched.
pub const FRAMES_ABOVE_CALLS: usize = 1 << 20;

thread_local! {
    static ROOM_FOR_CALLS: Cell<usize> = const { Cell::new(0) };
}

/// Declares that hook calls on this thread may use `bytes` of its stack.
/// The thread must have been started with at least
/// [`thread_stack_for`]`(bytes)`.
pub fn set_room_for_calls(bytes: usize) {
    ROOM_FOR_CALLS.with(|room| room.set(bytes));
}

/// The room this thread declared for hook calls; 0 if it declared none.
pub fn room_for_calls() -> usize {
    ROOM_FOR_CALLS.with(Cell::get)
}

/// The stack to start a thread with whose hook calls need `call_bytes`.
pub fn thread_stack_for(call_bytes: usize) -> usize {
    call_bytes + FRAMES_ABOVE_CALLS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_has_no_room_until_it_declares_some() {
        let declared = std::thread::spawn(|| {
            let before = room_for_calls();
            set_room_for_calls(3 << 20);
            (before, room_for_calls())
        })
        .join()
        .unwrap();
        assert_eq!(declared, (0, 3 << 20));
        assert_eq!(room_for_calls(), 0, "per thread");
    }
}
