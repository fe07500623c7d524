//! How much of the current thread's stack a synchronous hook call may use.
//!
//! A call on a fiber runs on the fiber's own stack, sized for the guest and
//! the host functions it calls. A synchronous call runs on the calling
//! thread's stack, below whatever the thread has already used, and a guest
//! that overruns a thread's stack aborts the process instead of failing
//! with kind `stack`. So a thread makes synchronous calls only if it was
//! started by [`spawn_with_room`], with a stack sized for them plus
//! [`FRAMES_ABOVE_CALLS`]: the proxy workers are; any other thread (the
//! main runtime's, tests', an embedder's) makes its calls on a fiber.

use std::cell::Cell;

/// Stack the frames above a hook call take on a worker (tokio, hyper, the
/// handler, the chain): far more than they use, which is cheap, since a
/// thread's stack is only reserved address space until it is touched.
pub const FRAMES_ABOVE_CALLS: usize = 1 << 20;

thread_local! {
    static ROOM_FOR_CALLS: Cell<usize> = const { Cell::new(0) };
}

/// Starts a thread named `name` whose hook calls, which need
/// `call_bytes` of stack, may be synchronous: its stack is sized for them
/// and it declares the room before running `body`.
pub fn spawn_with_room<T: Send + 'static>(
    name: String,
    call_bytes: usize,
    body: impl FnOnce() -> T + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<T>> {
    std::thread::Builder::new()
        .name(name)
        .stack_size(thread_stack_for(call_bytes))
        .spawn(move || {
            ROOM_FOR_CALLS.with(|room| room.set(call_bytes));
            body()
        })
}

/// The room this thread declared for hook calls; 0 if it declared none.
pub fn room_for_calls() -> usize {
    ROOM_FOR_CALLS.with(Cell::get)
}

/// The stack to start a thread with whose hook calls need `call_bytes`.
fn thread_stack_for(call_bytes: usize) -> usize {
    call_bytes + FRAMES_ABOVE_CALLS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_thread_started_with_room_has_it() {
        let room = spawn_with_room("roomy".into(), 3 << 20, room_for_calls)
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(room, 3 << 20);
        let plain = std::thread::spawn(room_for_calls).join().unwrap();
        assert_eq!(plain, 0);
        assert_eq!(room_for_calls(), 0, "per thread");
    }
}
