//! WASI for hook calls made synchronously, on the worker's own stack.
//!
//! wasmtime-wasi's synchronous bindings run every call that may wait (a
//! blocking write, `poll`, `pollable.block`, even dropping a stream) through
//! `Handle::block_on`, which panics on a tokio worker thread, where every
//! hook call runs. This linker takes those bindings and replaces the calls
//! that may wait with versions that never enter a runtime:
//!
//! - what is ready at once (a write to a plugin's stdout or stderr, which
//!   never waits; a stream's end) is done at once;
//! - a clock wait (`subscribe-duration`, `subscribe-instant`, which Rust's
//!   `std::thread::sleep` uses) is a pollable on the std clock, and a call
//!   that waits for it sleeps the thread until it is due;
//! - a wait on anything else, or past the hook's deadline, ends at the
//!   deadline as [`wasmtime::Trap::Interrupt`], the same timeout a busy
//!   guest gets.
//!
//! A wait holds the worker thread, which is why a plugin whose call waits or
//! runs for a whole epoch tick has its calls moved to a fiber (where a wait
//! yields the thread) for a while; see `PluginVersion::run_now`. The socket
//! calls that would also block (binding or listening on a socket) are
//! denied by the context before they could, and a host panic in a
//! synchronous call is caught and counted as a trap.

use std::future::Future;
use std::task::Poll;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use wasmtime::StoreContextMut;
use wasmtime::component::{HasData, Linker, Resource, ResourceTable};
use wasmtime_wasi::clocks::{WasiClocksCtxView, WasiClocksView};
use wasmtime_wasi::p2;
use wasmtime_wasi::p2::bindings::clocks::monotonic_clock;
use wasmtime_wasi::p2::bindings::io::poll::{
    Host as AsyncPollHost, HostPollable as AsyncHostPollable,
};
use wasmtime_wasi::p2::bindings::io::streams::{
    HostInputStream as AsyncHostInputStream, HostOutputStream as AsyncHostOutputStream,
};
use wasmtime_wasi::p2::bindings::sockets::network::{ErrorCode, IpAddressFamily, IpSocketAddress};
use wasmtime_wasi::p2::bindings::sockets::tcp::HostTcpSocket as AsyncTcp;
use wasmtime_wasi::p2::bindings::sockets::udp::HostUdpSocket as AsyncUdp;
use wasmtime_wasi::p2::bindings::sockets::udp_create_socket::Host as AsyncCreateUdp;
use wasmtime_wasi::p2::bindings::sync::io::{poll, streams};
use wasmtime_wasi::p2::{DynInputStream, DynOutputStream, DynPollable, Pollable, StreamError};
use wasmtime_wasi::p2::{Network, SocketResult, StreamResult, TcpSocket, UdpSocket, subscribe};
use wasmtime_wasi::sockets::WasiSocketsView;

use super::state::HostState;

/// How long a waiting call sleeps between two looks at what it waits for.
const WAIT_STEP: Duration = Duration::from_micros(100);

/// Adds WASI, with the waiting calls replaced as described above.
pub fn add_to_linker(linker: &mut Linker<HostState>) -> anyhow::Result<()> {
    p2::add_to_linker_sync(linker).map_err(|e| anyhow::anyhow!("linking WASI: {e:#}"))?;
    linker.allow_shadowing(true);
    let replaced = (|| {
        poll::add_to_linker::<HostState, Waits>(linker, Waits::view)?;
        streams::add_to_linker::<HostState, Waits>(linker, Waits::view)?;
        monotonic_clock::add_to_linker::<HostState, StdClock>(linker, StdClock::view)?;
        add_socket_calls(linker)
    })();
    linker.allow_shadowing(false);
    replaced.map_err(|e| anyhow::anyhow!("linking WASI's synchronous waits: {e:#}"))
}

/// The socket calls that wasmtime-wasi's synchronous bindings run through
/// the tokio runtime. With the network denied (as Tandem's context does)
/// each answers at once; one that would not is a trap.
fn add_socket_calls(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    let mut tcp = linker.instance("wasi:sockets/tcp@0.2.12")?;
    tcp.func_wrap(
        "[method]tcp-socket.start-bind",
        |mut store: StoreContextMut<'_, HostState>,
         (socket, network, address): (Resource<TcpSocket>, Resource<Network>, IpSocketAddress)| {
            let mut view = store.data_mut().sockets();
            answer_now(AsyncTcp::start_bind(&mut view, socket, network, address))
        },
    )?;
    tcp.func_wrap(
        "[method]tcp-socket.start-listen",
        |mut store: StoreContextMut<'_, HostState>, (socket,): (Resource<TcpSocket>,)| {
            let mut view = store.data_mut().sockets();
            answer_now(AsyncTcp::start_listen(&mut view, socket))
        },
    )?;
    let mut udp = linker.instance("wasi:sockets/udp@0.2.12")?;
    udp.func_wrap(
        "[method]udp-socket.start-bind",
        |mut store: StoreContextMut<'_, HostState>,
         (socket, network, address): (Resource<UdpSocket>, Resource<Network>, IpSocketAddress)| {
            let mut view = store.data_mut().sockets();
            answer_now(AsyncUdp::start_bind(&mut view, socket, network, address))
        },
    )?;
    udp.func_wrap(
        "[method]udp-socket.stream",
        |mut store: StoreContextMut<'_, HostState>,
         (socket, remote): (Resource<UdpSocket>, Option<IpSocketAddress>)| {
            let mut view = store.data_mut().sockets();
            answer_now(AsyncUdp::stream(&mut view, socket, remote))
        },
    )?;
    let mut create = linker.instance("wasi:sockets/udp-create-socket@0.2.12")?;
    create.func_wrap(
        "create-udp-socket",
        |mut store: StoreContextMut<'_, HostState>, (family,): (IpAddressFamily,)| {
            let mut view = store.data_mut().sockets();
            answer_now(AsyncCreateUdp::create_udp_socket(&mut view, family))
        },
    )?;
    Ok(())
}

/// A socket call's answer, which must be there at once, as the component
/// model lowers it.
fn answer_now<T>(
    call: impl Future<Output = SocketResult<T>>,
) -> wasmtime::Result<(Result<T, ErrorCode>,)> {
    match poll_once(call) {
        Some(Ok(value)) => Ok((Ok(value),)),
        Some(Err(error)) => Ok((Err(error.downcast()?),)),
        None => Err(wasmtime::format_err!(
            "a socket call would wait, which a synchronous hook call cannot"
        )),
    }
}

/// Runs `attempt` (which makes a future and polls it once) until it gives
/// an answer; between attempts the thread sleeps, and at `deadline` the
/// wait ends as an interrupt.
/// `waited` is set once the thread has slept.
fn settle<T>(
    deadline: Instant,
    waited: &mut bool,
    mut attempt: impl FnMut() -> Option<T>,
) -> wasmtime::Result<T> {
    // Twice at once: a pollable that is already due may first ask to be
    // polled again (wasmtime-wasi's own past deadlines do).
    for _ in 0..2 {
        if let Some(answer) = attempt() {
            return Ok(answer);
        }
    }
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Err(wasmtime::Trap::Interrupt.into());
        }
        *waited = true;
        std::thread::sleep((deadline - now).min(WAIT_STEP));
        if let Some(answer) = attempt() {
            return Ok(answer);
        }
    }
}

/// Polls a future once, with a waker that does nothing: the callers look
/// again themselves.
fn poll_once<F: Future>(future: F) -> Option<F::Output> {
    future.now_or_never()
}

/// A stream call that may wait, settled; an interrupt becomes the stream
/// error that traps.
fn settle_stream<T>(
    deadline: Instant,
    waited: &mut bool,
    attempt: impl FnMut() -> Option<StreamResult<T>>,
) -> StreamResult<T> {
    settle(deadline, waited, attempt).unwrap_or_else(|interrupt| Err(StreamError::Trap(interrupt)))
}

/// `wasi:io/poll` and `wasi:io/streams` over the store's resource table.
struct Waits;

impl HasData for Waits {
    type Data<'a> = WaitsView<'a>;
}

/// The resource table, the call's deadline, and where to note a wait.
pub struct WaitsView<'a> {
    table: &'a mut ResourceTable,
    deadline: Instant,
    waited: &'a mut bool,
}

impl Waits {
    fn view(state: &mut HostState) -> WaitsView<'_> {
        state.waits_view()
    }
}

impl<'a> WaitsView<'a> {
    /// The view of a store's table for a call with this deadline.
    pub fn new(table: &'a mut ResourceTable, deadline: Instant, waited: &'a mut bool) -> Self {
        Self {
            table,
            deadline,
            waited,
        }
    }
}

impl poll::Host for WaitsView<'_> {
    fn poll(&mut self, pollables: Vec<Resource<DynPollable>>) -> wasmtime::Result<Vec<u32>> {
        let reps: Vec<u32> = pollables.iter().map(Resource::rep).collect();
        let table = &mut *self.table;
        settle(self.deadline, self.waited, || {
            let borrowed = reps.iter().map(|&rep| Resource::new_borrow(rep)).collect();
            poll_once(AsyncPollHost::poll(table, borrowed))
        })?
    }
}

impl poll::HostPollable for WaitsView<'_> {
    fn ready(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<bool> {
        let rep = pollable.rep();
        Ok(poll_once(AsyncHostPollable::block(
            self.table,
            Resource::new_borrow(rep),
        ))
        .is_some())
    }

    fn block(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        let rep = pollable.rep();
        let table = &mut *self.table;
        settle(self.deadline, self.waited, || {
            poll_once(AsyncHostPollable::block(table, Resource::new_borrow(rep)))
        })?
    }

    fn drop(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        AsyncHostPollable::drop(self.table, pollable)
    }
}

impl streams::Host for WaitsView<'_> {
    fn convert_stream_error(&mut self, err: StreamError) -> wasmtime::Result<streams::StreamError> {
        streams::Host::convert_stream_error(self.table, err)
    }
}

impl streams::HostOutputStream for WaitsView<'_> {
    fn drop(&mut self, stream: Resource<DynOutputStream>) -> wasmtime::Result<()> {
        // Dropping cancels the stream, which for a plugin's output (the only
        // output streams it can have) is immediate.
        let table = &mut *self.table;
        let mut stream = Some(stream);
        settle(self.deadline, self.waited, || {
            let stream = stream.take().expect("dropped once");
            poll_once(AsyncHostOutputStream::drop(table, stream))
        })?
    }

    fn check_write(&mut self, stream: Resource<DynOutputStream>) -> StreamResult<u64> {
        streams::HostOutputStream::check_write(self.table, stream)
    }

    fn write(&mut self, stream: Resource<DynOutputStream>, bytes: Vec<u8>) -> StreamResult<()> {
        streams::HostOutputStream::write(self.table, stream, bytes)
    }

    fn blocking_write_and_flush(
        &mut self,
        stream: Resource<DynOutputStream>,
        bytes: Vec<u8>,
    ) -> StreamResult<()> {
        let rep = stream.rep();
        let table = &mut *self.table;
        settle_stream(self.deadline, self.waited, || {
            let stream = Resource::new_borrow(rep);
            poll_once(AsyncHostOutputStream::blocking_write_and_flush(
                table,
                stream,
                bytes.clone(),
            ))
        })
    }

    fn blocking_write_zeroes_and_flush(
        &mut self,
        stream: Resource<DynOutputStream>,
        len: u64,
    ) -> StreamResult<()> {
        let rep = stream.rep();
        let table = &mut *self.table;
        settle_stream(self.deadline, self.waited, || {
            let stream = Resource::new_borrow(rep);
            poll_once(AsyncHostOutputStream::blocking_write_zeroes_and_flush(
                table, stream, len,
            ))
        })
    }

    fn subscribe(
        &mut self,
        stream: Resource<DynOutputStream>,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        streams::HostOutputStream::subscribe(self.table, stream)
    }

    fn write_zeroes(&mut self, stream: Resource<DynOutputStream>, len: u64) -> StreamResult<()> {
        streams::HostOutputStream::write_zeroes(self.table, stream, len)
    }

    fn flush(&mut self, stream: Resource<DynOutputStream>) -> StreamResult<()> {
        streams::HostOutputStream::flush(self.table, stream)
    }

    fn blocking_flush(&mut self, stream: Resource<DynOutputStream>) -> StreamResult<()> {
        let rep = stream.rep();
        let table = &mut *self.table;
        settle_stream(self.deadline, self.waited, || {
            poll_once(AsyncHostOutputStream::blocking_flush(
                table,
                Resource::new_borrow(rep),
            ))
        })
    }

    fn splice(
        &mut self,
        dst: Resource<DynOutputStream>,
        src: Resource<DynInputStream>,
        len: u64,
    ) -> StreamResult<u64> {
        streams::HostOutputStream::splice(self.table, dst, src, len)
    }

    fn blocking_splice(
        &mut self,
        dst: Resource<DynOutputStream>,
        src: Resource<DynInputStream>,
        len: u64,
    ) -> StreamResult<u64> {
        let (dst, src) = (dst.rep(), src.rep());
        let table = &mut *self.table;
        settle_stream(self.deadline, self.waited, || {
            poll_once(AsyncHostOutputStream::blocking_splice(
                table,
                Resource::new_borrow(dst),
                Resource::new_borrow(src),
                len,
            ))
        })
    }
}

impl streams::HostInputStream for WaitsView<'_> {
    fn drop(&mut self, stream: Resource<DynInputStream>) -> wasmtime::Result<()> {
        let table = &mut *self.table;
        let mut stream = Some(stream);
        settle(self.deadline, self.waited, || {
            let stream = stream.take().expect("dropped once");
            poll_once(AsyncHostInputStream::drop(table, stream))
        })?
    }

    fn read(&mut self, stream: Resource<DynInputStream>, len: u64) -> StreamResult<Vec<u8>> {
        streams::HostInputStream::read(self.table, stream, len)
    }

    fn blocking_read(
        &mut self,
        stream: Resource<DynInputStream>,
        len: u64,
    ) -> StreamResult<Vec<u8>> {
        let rep = stream.rep();
        let table = &mut *self.table;
        settle_stream(self.deadline, self.waited, || {
            poll_once(AsyncHostInputStream::blocking_read(
                table,
                Resource::new_borrow(rep),
                len,
            ))
        })
    }

    fn skip(&mut self, stream: Resource<DynInputStream>, len: u64) -> StreamResult<u64> {
        streams::HostInputStream::skip(self.table, stream, len)
    }

    fn blocking_skip(&mut self, stream: Resource<DynInputStream>, len: u64) -> StreamResult<u64> {
        let rep = stream.rep();
        let table = &mut *self.table;
        settle_stream(self.deadline, self.waited, || {
            poll_once(AsyncHostInputStream::blocking_skip(
                table,
                Resource::new_borrow(rep),
                len,
            ))
        })
    }

    fn subscribe(
        &mut self,
        stream: Resource<DynInputStream>,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        streams::HostInputStream::subscribe(self.table, stream)
    }
}

/// `wasi:clocks/monotonic-clock` whose waits are due on the std clock,
/// which a synchronous wait can watch (wasmtime-wasi's are tokio timers,
/// which only a running tokio driver fires).
struct StdClock;

impl HasData for StdClock {
    type Data<'a> = StdClockView<'a>;
}

/// The store's clocks, whose waits are replaced.
pub struct StdClockView<'a>(WasiClocksCtxView<'a>);

impl StdClock {
    fn view(state: &mut HostState) -> StdClockView<'_> {
        StdClockView(state.clocks())
    }
}

/// A clock wait: ready once the std clock passes `at`.
struct DueAt(Instant);

#[wasmtime_wasi::async_trait]
impl Pollable for DueAt {
    async fn ready(&mut self) {
        let at = self.0;
        std::future::poll_fn(|_| {
            if Instant::now() >= at {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await
    }
}

/// A pollable due `nanos` from now.
fn due_in(table: &mut ResourceTable, nanos: u64) -> wasmtime::Result<Resource<DynPollable>> {
    // A wait past any deadline is the same as one that never ends.
    let at = Instant::now()
        .checked_add(Duration::from_nanos(nanos))
        .unwrap_or_else(|| Instant::now() + Duration::from_secs(365 * 24 * 3600));
    let due = table.push(DueAt(at))?;
    subscribe(table, due)
}

impl monotonic_clock::Host for StdClockView<'_> {
    fn now(&mut self) -> wasmtime::Result<u64> {
        monotonic_clock::Host::now(&mut self.0)
    }

    fn resolution(&mut self) -> wasmtime::Result<u64> {
        monotonic_clock::Host::resolution(&mut self.0)
    }

    fn subscribe_instant(&mut self, when: u64) -> wasmtime::Result<Resource<DynPollable>> {
        let now = monotonic_clock::Host::now(&mut self.0)?;
        due_in(self.0.table, when.saturating_sub(now))
    }

    fn subscribe_duration(&mut self, nanos: u64) -> wasmtime::Result<Resource<DynPollable>> {
        due_in(self.0.table, nanos)
    }
}
