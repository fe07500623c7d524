//! A closed-loop HTTP/1.1 load generator: each connection sends a request,
//! waits for the whole response, records the latency, and repeats until the
//! time is up.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::cpu;

/// What one load run measured.
pub struct LoadResult {
    /// Responses with the expected status.
    pub ok: u64,
    /// Transport errors and unexpected statuses.
    pub errors: u64,
    /// Wall time of the measured part.
    pub elapsed: Duration,
    /// Latencies in microseconds.
    pub latency_us: Histogram<u64>,
    /// CPU time the measured processes spent during the measured part.
    pub cpu: Option<Duration>,
    /// Each slice's figures, when the run was taken in slices (see
    /// [`interleaved`]), in the order they ran.
    pub slices: Vec<SliceFigures>,
}

/// What one slice of a run measured.
#[derive(Debug, Clone, Copy)]
pub struct SliceFigures {
    /// Successful requests per second.
    pub rate: f64,
    /// CPU microseconds of the measured processes per successful request.
    pub cpu_us_per_request: Option<f64>,
}

impl LoadResult {
    /// Successful requests per second.
    pub fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }

    /// CPU microseconds of the measured processes per successful request.
    pub fn cpu_us_per_request(&self) -> Option<f64> {
        let cpu = self.cpu?;
        (self.ok > 0).then(|| cpu.as_secs_f64() * 1e6 / self.ok as f64)
    }

    /// A latency percentile in microseconds.
    pub fn percentile(&self, q: f64) -> u64 {
        self.latency_us.value_at_quantile(q)
    }

    /// Adds a run measured after this one against the same target, as if
    /// the two had been one longer run.
    pub fn append(&mut self, later: LoadResult) {
        self.ok += later.ok;
        self.errors += later.errors;
        self.elapsed += later.elapsed;
        self.cpu = self.cpu.zip(later.cpu).map(|(a, b)| a + b);
        self.latency_us.add(later.latency_us).expect("same bounds");
        self.slices.extend(later.slices);
    }
}

/// One load shape.
#[derive(Clone, Copy)]
pub struct LoadShape {
    /// Concurrent connections.
    pub connections: usize,
    /// Unmeasured warm-up.
    pub warmup: Duration,
    /// Measured time.
    pub duration: Duration,
}

async fn connection(
    addr: SocketAddr,
    path: &'static str,
    headers: &'static [(&'static str, &'static str)],
    expect: u16,
    measure_from: Instant,
    until: Instant,
) -> (u64, u64, Histogram<u64>) {
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
    let (mut ok, mut errors) = (0u64, 0u64);
    'reconnect: while Instant::now() < until {
        let Ok(stream) = TcpStream::connect(addr).await else {
            errors += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let Ok((mut sender, conn)) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
        else {
            errors += 1;
            continue;
        };
        tokio::spawn(conn);
        while Instant::now() < until {
            // A connection the server closed between two requests is not a
            // failed request: connect again.
            if sender.ready().await.is_err() {
                continue 'reconnect;
            }
            let mut request = Request::get(path).header("host", "bench");
            for (name, value) in headers {
                request = request.header(*name, *value);
            }
            let request = request.body(Empty::<Bytes>::new()).expect("valid request");
            let started = Instant::now();
            let result = async {
                let response = sender.send_request(request).await?;
                let status = response.status().as_u16();
                response.into_body().collect().await?;
                Ok::<_, hyper::Error>(status)
            }
            .await;
            let measured = started >= measure_from;
            match result {
                Ok(status) if status == expect => {
                    if measured {
                        ok += 1;
                        let _ = histogram.record(started.elapsed().as_micros().max(1) as u64);
                    }
                }
                Ok(_) => errors += u64::from(measured),
                Err(_) => {
                    errors += u64::from(measured);
                    continue 'reconnect;
                }
            }
        }
    }
    (ok, errors, histogram)
}

/// Drives `path` on `addr` with `shape`, merges the results, and measures
/// the CPU time that `processes` (the proxy; none for no figure) spend
/// during the measured part.
pub async fn run_metered(
    addr: SocketAddr,
    path: &'static str,
    headers: &'static [(&'static str, &'static str)],
    expect: u16,
    shape: LoadShape,
    processes: &[u32],
) -> LoadResult {
    let measure_from = Instant::now() + shape.warmup;
    let until = measure_from + shape.duration;
    let tasks: Vec<_> = (0..shape.connections)
        .map(|_| tokio::spawn(connection(addr, path, headers, expect, measure_from, until)))
        .collect();
    let meter = (!processes.is_empty()).then(|| {
        let processes = processes.to_vec();
        tokio::spawn(async move {
            tokio::time::sleep_until(measure_from.into()).await;
            let start = cpu::total(&processes)?;
            tokio::time::sleep_until(until.into()).await;
            Some(cpu::total(&processes)?.saturating_sub(start))
        })
    });
    let mut total = LoadResult {
        ok: 0,
        errors: 0,
        elapsed: shape.duration,
        latency_us: Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds"),
        cpu: None,
        slices: Vec::new(),
    };
    for task in tasks {
        let (ok, errors, histogram) = task.await.expect("load task");
        total.ok += ok;
        total.errors += errors;
        total.latency_us.add(histogram).expect("same bounds");
    }
    if let Some(meter) = meter {
        total.cpu = meter.await.ok().flatten();
    }
    total.slices.push(SliceFigures {
        rate: total.rate(),
        cpu_us_per_request: total.cpu_us_per_request(),
    });
    total
}

/// Each target's load is split into this many slices, taken in turn
/// (round-robin over the targets), so that a burst of other work on the
/// shared machine spreads over every row instead of landing on one.
pub const ROUNDS: u32 = 4;

/// One target of [`interleaved`]: where it listens, the headers to send,
/// and the processes whose CPU time to meter (none for no figure).
pub struct Target<'a> {
    /// The listener.
    pub address: SocketAddr,
    /// Headers on every request.
    pub headers: &'static [(&'static str, &'static str)],
    /// Processes to meter.
    pub pids: &'a [u32],
}

/// Drives `path` on every target for `shape.duration` each, taken in
/// [`ROUNDS`] interleaved slices, and returns each target's merged result,
/// in order.
pub fn interleaved(
    runtime: &tokio::runtime::Runtime,
    targets: &[Target<'_>],
    path: &'static str,
    shape: LoadShape,
) -> Vec<LoadResult> {
    let slice = LoadShape {
        duration: shape.duration / ROUNDS,
        ..shape
    };
    let mut results: Vec<Option<LoadResult>> = targets.iter().map(|_| None).collect();
    for round in 1..=ROUNDS {
        println!("bench: round {round} of {ROUNDS}");
        for (target, merged) in targets.iter().zip(&mut results) {
            let result = runtime.block_on(run_metered(
                target.address,
                path,
                target.headers,
                200,
                slice,
                target.pids,
            ));
            match merged {
                Some(total) => total.append(result),
                None => *merged = Some(result),
            }
        }
    }
    results
        .into_iter()
        .map(|result| result.expect("ROUNDS is at least one"))
        .collect()
}
