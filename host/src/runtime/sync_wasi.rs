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
//! yields the thread) for a while; see `call_mode`. The socket calls that
//! wasmtime-wasi also runs through the runtime (binding, listening,
//! creating a UDP socket) are answered at once: the context denies them.
//! The remaining ones (filesystem descriptor calls, dropping an outgoing
//! datagram stream) need a descriptor or a UDP socket, which a plugin
//! cannot get while the context grants no preopened directory and no UDP;
//! were one reached, its panic would be caught and the call fail like a
//! trap, on either path.

use std::future::Future;
use std::task::{Context, Poll, Waker};
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

use super::call_mode::CallMode;
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
    for (instance, function) in [
        (TCP, "[method]tcp-socket.start-bind"),
        (TCP, "[method]tcp-socket.start-listen"),
        (UDP, "[method]udp-socket.start-bind"),
        (UDP, "[method]udp-socket.stream"),
        (CREATE_UDP, "create-udp-socket"),
    ] {
        ensure_defined(linker, instance, function)?;
    }
    let mut tcp = linker.instance(TCP)?;
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
    let mut udp = linker.instance(UDP)?;
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
    let mut create = linker.instance(CREATE_UDP)?;
    create.func_wrap(
        "create-udp-socket",
        |mut store: StoreContextMut<'_, HostState>, (family,): (IpAddressFamily,)| {
            let mut view = store.data_mut().sockets();
            answer_now(AsyncCreateUdp::create_udp_socket(&mut view, family))
        },
    )?;
    Ok(())
}

/// The socket interfaces as wasmtime-wasi names them (its WIT's version).
const TCP: &str = "wasi:sockets/tcp@0.2.12";
const UDP: &str = "wasi:sockets/udp@0.2.12";
const CREATE_UDP: &str = "wasi:sockets/udp-create-socket@0.2.12";

/// Fails unless wasmtime-wasi already defined `function` in `instance`.
/// The names above carry its WIT's version; after an upgrade that moves
/// it, replacing would silently add a second instance beside the real one
/// instead, and this stops the host from starting.
fn ensure_defined(
    linker: &mut Linker<HostState>,
    instance: &str,
    function: &str,
) -> wasmtime::Result<()> {
    linker.allow_shadowing(false);
    let probe = linker
        .instance(instance)?
        .func_wrap(function, |_: StoreContextMut<'_, HostState>, (): ()| Ok(()));
    linker.allow_shadowing(true);
    match probe {
        // "defined twice": it is there to be replaced.
        Err(_) => Ok(()),
        Ok(()) => Err(wasmtime::format_err!(
            "wasmtime-wasi defines no `{function}` in `{instance}`: update the \
             version in host/src/runtime/sync_wasi.rs to its WIT's"
        )),
    }
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

/// Polls `future` until it is ready: at once, and if it is not, again
/// every [`WAIT_STEP`] while the thread sleeps (telling `mode` before the
/// first sleep), until `deadline`, where the wait ends as an interrupt.
/// One future throughout, so an operation that did part of its work before
/// it had to wait is not started again.
fn settle<F: Future>(deadline: Instant, mode: &CallMode, future: F) -> wasmtime::Result<F::Output> {
    let mut future = std::pin::pin!(future);
    let mut context = Context::from_waker(Waker::noop());
    // Twice at once: a pollable that is already due may first ask to be
    // polled again (wasmtime-wasi's own past deadlines do).
    for _ in 0..2 {
        if let Poll::Ready(answer) = future.as_mut().poll(&mut context) {
            return Ok(answer);
        }
    }
    mode.waited();
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Err(wasmtime::Trap::Interrupt.into());
        }
        std::thread::sleep((deadline - now).min(WAIT_STEP));
        if let Poll::Ready(answer) = future.as_mut().poll(&mut context) {
            return Ok(answer);
        }
    }
}

/// Polls a future once, with a waker that does nothing.
fn poll_once<F: Future>(future: F) -> Option<F::Output> {
    future.now_or_never()
}

/// A stream call that may wait, settled; an interrupt becomes the stream
/// error that traps.
fn settle_stream<T>(
    deadline: Instant,
    mode: &CallMode,
    future: impl Future<Output = StreamResult<T>>,
) -> StreamResult<T> {
    settle(deadline, mode, future).unwrap_or_else(|interrupt| Err(StreamError::Trap(interrupt)))
}

/// `wasi:io/poll` and `wasi:io/streams` over the store's resource table.
struct Waits;

impl HasData for Waits {
    type Data<'a> = WaitsView<'a>;
}

/// The resource table, the call's deadline, and the version's call mode,
/// which a wait moves to a fiber.
pub struct WaitsView<'a> {
    table: &'a mut ResourceTable,
    deadline: Instant,
    mode: &'a CallMode,
}

impl Waits {
    fn view(state: &mut HostState) -> WaitsView<'_> {
        state.waits_view()
    }
}

impl<'a> WaitsView<'a> {
    /// The view of a store's table for a call with this deadline.
    pub fn new(table: &'a mut ResourceTable, deadline: Instant, mode: &'a CallMode) -> Self {
        Self {
            table,
            deadline,
            mode,
        }
    }
}

impl poll::Host for WaitsView<'_> {
    fn poll(&mut self, pollables: Vec<Resource<DynPollable>>) -> wasmtime::Result<Vec<u32>> {
        settle(
            self.deadline,
            self.mode,
            AsyncPollHost::poll(self.table, pollables),
        )?
    }
}

impl poll::HostPollable for WaitsView<'_> {
    fn ready(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<bool> {
        poll_once(AsyncHostPollable::ready(self.table, pollable)).unwrap_or(Ok(false))
    }

    fn block(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        settle(
            self.deadline,
            self.mode,
            AsyncHostPollable::block(self.table, pollable),
        )?
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
        settle(
            self.deadline,
            self.mode,
            AsyncHostOutputStream::drop(self.table, stream),
        )?
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
        settle_stream(
            self.deadline,
            self.mode,
            AsyncHostOutputStream::blocking_write_and_flush(self.table, stream, bytes),
        )
    }

    fn blocking_write_zeroes_and_flush(
        &mut self,
        stream: Resource<DynOutputStream>,
        len: u64,
    ) -> StreamResult<()> {
        settle_stream(
            self.deadline,
            self.mode,
            AsyncHostOutputStream::blocking_write_zeroes_and_flush(self.table, stream, len),
        )
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
        settle_stream(
            self.deadline,
            self.mode,
            AsyncHostOutputStream::blocking_flush(self.table, stream),
        )
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
        settle_stream(
            self.deadline,
            self.mode,
            AsyncHostOutputStream::blocking_splice(self.table, dst, src, len),
        )
    }
}

impl streams::HostInputStream for WaitsView<'_> {
    fn drop(&mut self, stream: Resource<DynInputStream>) -> wasmtime::Result<()> {
        settle(
            self.deadline,
            self.mode,
            AsyncHostInputStream::drop(self.table, stream),
        )?
    }

    fn read(&mut self, stream: Resource<DynInputStream>, len: u64) -> StreamResult<Vec<u8>> {
        streams::HostInputStream::read(self.table, stream, len)
    }

    fn blocking_read(
        &mut self,
        stream: Resource<DynInputStream>,
        len: u64,
    ) -> StreamResult<Vec<u8>> {
        settle_stream(
            self.deadline,
            self.mode,
            AsyncHostInputStream::blocking_read(self.table, stream, len),
        )
    }

    fn skip(&mut self, stream: Resource<DynInputStream>, len: u64) -> StreamResult<u64> {
        streams::HostInputStream::skip(self.table, stream, len)
    }

    fn blocking_skip(&mut self, stream: Resource<DynInputStream>, len: u64) -> StreamResult<u64> {
        settle_stream(
            self.deadline,
            self.mode,
            AsyncHostInputStream::blocking_skip(self.table, stream, len),
        )
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
