//! Child processes that never outlive the xtask: [`Service`] starts one,
//! waits for the line it prints when it is ready, and stops it (SIGTERM,
//! then SIGKILL) when stopped or dropped, error paths included.
//! [`Interrupt`] turns Ctrl-C, SIGTERM and SIGHUP into a flag, so the xtask
//! unwinds through those guards instead of dying.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// How long a service gets to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// How often waits look at the interrupt flag and the child.
const POLL: Duration = Duration::from_millis(50);

/// How a stopped service ended.
#[derive(Debug)]
pub enum Stopped {
    /// It exited on its own or after SIGTERM.
    Exited(ExitStatus),
    /// It ignored SIGTERM for [`STOP_TIMEOUT`] and was killed.
    Killed,
}

/// A running child process, stopped when this is dropped.
pub struct Service {
    name: &'static str,
    child: Option<Child>,
    lines: Option<Receiver<String>>,
}

impl Service {
    /// Starts `command` with stdin closed and stdout read line by line; set
    /// stderr on `command` before calling.
    pub fn spawn(name: &'static str, mut command: Command) -> anyhow::Result<Self> {
        command.stdin(Stdio::null()).stdout(Stdio::piped());
        let mut child = command
            .spawn()
            .with_context(|| format!("cannot start {name} ({:?})", command.get_program()))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let (sender, lines) = mpsc::channel();
        thread::spawn(move || {
            // Keep reading after nobody listens, so the child never blocks on
            // a full pipe or dies of SIGPIPE.
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = sender.send(line);
            }
        });
        Ok(Self {
            name,
            child: Some(child),
            lines: Some(lines),
        })
    }

    /// Waits until the service prints a line starting with `prefix` and
    /// returns it. Fails if the service exits first, on timeout, or on an
    /// interrupt. Other lines are echoed with the service's name.
    pub fn wait_for_line(
        &mut self,
        prefix: &str,
        timeout: Duration,
        interrupt: &Interrupt,
    ) -> anyhow::Result<String> {
        let deadline = Instant::now() + timeout;
        let lines = self.lines.take().context("output already handed over")?;
        let result = self.read_until(&lines, prefix, deadline, timeout, interrupt);
        self.lines = Some(lines);
        result
    }

    fn read_until(
        &mut self,
        lines: &Receiver<String>,
        prefix: &str,
        deadline: Instant,
        timeout: Duration,
        interrupt: &Interrupt,
    ) -> anyhow::Result<String> {
        loop {
            if interrupt.requested() {
                bail!("interrupted while waiting for {}", self.name);
            }
            match lines.recv_timeout(POLL) {
                Ok(line) if line.starts_with(prefix) => return Ok(line),
                Ok(line) => println!("[{}] {line}", self.name),
                Err(RecvTimeoutError::Timeout) => {
                    if let Some(status) = self.exited()? {
                        bail!("{} exited before it was ready ({status})", self.name);
                    }
                    if Instant::now() > deadline {
                        bail!(
                            "{} did not print `{prefix}...` within {timeout:?}",
                            self.name
                        );
                    }
                }
                Err(RecvTimeoutError::Disconnected) => {
                    // Stdout closed: the process is gone or going.
                    let status = self.child_mut()?.wait()?;
                    bail!("{} exited before it was ready ({status})", self.name);
                }
            }
        }
    }

    /// From now on, prints every stdout line of the service, prefixed with
    /// its name.
    pub fn echo_output(&mut self) {
        if let Some(lines) = self.lines.take() {
            let name = self.name;
            thread::spawn(move || {
                for line in lines {
                    println!("[{name}] {line}");
                }
            });
        }
    }

    /// The exit status, if the service has exited.
    pub fn exited(&mut self) -> anyhow::Result<Option<ExitStatus>> {
        let name = self.name;
        self.child_mut()?
            .try_wait()
            .with_context(|| format!("cannot check on {name}"))
    }

    /// Sends SIGTERM and waits for the service to exit, killing it after
    /// [`STOP_TIMEOUT`].
    pub fn stop(mut self) -> anyhow::Result<Stopped> {
        self.stop_child()
    }

    /// The process id, while the service runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|child| child.id())
    }

    fn child_mut(&mut self) -> anyhow::Result<&mut Child> {
        self.child.as_mut().context("already stopped")
    }

    fn stop_child(&mut self) -> anyhow::Result<Stopped> {
        let mut child = self.child.take().context("already stopped")?;
        if let Some(status) = child.try_wait()? {
            return Ok(Stopped::Exited(status));
        }
        if !terminate(&child) {
            // No way to ask politely: fall back to SIGKILL at once.
            let _ = child.kill();
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait()? {
                return Ok(Stopped::Exited(status));
            }
            thread::sleep(POLL);
        }
        eprintln!(
            "xtask: {} did not exit within {STOP_TIMEOUT:?} of SIGTERM; killing it",
            self.name
        );
        let _ = child.kill();
        child.wait()?;
        Ok(Stopped::Killed)
    }
}

/// Sends SIGTERM with the `kill` utility. A safe `kill(2)` from a crate
/// (rustix's `process` feature) would change the features of the rustix
/// that wasmtime uses and rebuild wasmtime, and this crate has no unsafe
/// code. Returns false if the utility is missing.
fn terminate(child: &Child) -> bool {
    // A failure (the process exited just now) is fine: the wait collects it.
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

impl Drop for Service {
    fn drop(&mut self) {
        if self.child.is_some()
            && let Err(error) = self.stop_child()
        {
            eprintln!("xtask: stopping {}: {error:#}", self.name);
        }
    }
}

/// Set once SIGINT (Ctrl-C), SIGTERM or SIGHUP arrives.
pub struct Interrupt {
    flag: AtomicBool,
    wake: (Mutex<()>, Condvar),
}

impl Interrupt {
    /// Installs the signal handlers (once per process) and returns the flag
    /// they set. After this, those signals no longer end the xtask: every
    /// wait has to look at the flag.
    pub fn install() -> anyhow::Result<&'static Interrupt> {
        static INTERRUPT: Interrupt = Interrupt {
            flag: AtomicBool::new(false),
            wake: (Mutex::new(()), Condvar::new()),
        };
        static INSTALLED: Mutex<bool> = Mutex::new(false);
        let mut installed = INSTALLED.lock().unwrap_or_else(|e| e.into_inner());
        if !*installed {
            listen(&INTERRUPT)?;
            *installed = true;
        }
        Ok(&INTERRUPT)
    }

    /// Whether a signal has arrived.
    pub fn requested(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }

    /// Waits until a signal arrives or `timeout` passes; returns whether one
    /// arrived.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        let guard = self.wake.0.lock().unwrap_or_else(|e| e.into_inner());
        if self.requested() {
            return true;
        }
        let _ = self
            .wake
            .1
            .wait_timeout_while(guard, timeout, |()| !self.requested());
        self.requested()
    }

    fn set(&self) {
        let _guard = self.wake.0.lock().unwrap_or_else(|e| e.into_inner());
        self.flag.store(true, Ordering::SeqCst);
        self.wake.1.notify_all();
    }
}

/// Registers the handlers now (so a Ctrl-C right after this is caught) and
/// waits for signals on a thread of its own.
fn listen(interrupt: &'static Interrupt) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .context("cannot start the signal listener")?;
    let (mut int, mut term, mut hup) = {
        let _context = runtime.enter();
        (
            signal(SignalKind::interrupt())?,
            signal(SignalKind::terminate())?,
            signal(SignalKind::hangup())?,
        )
    };
    thread::spawn(move || {
        runtime.block_on(async {
            loop {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                    _ = hup.recv() => {}
                }
                interrupt.set();
            }
        });
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shell(script: &str) -> Command {
        let mut command = Command::new("sh");
        command.args(["-c", script]);
        command
    }

    #[test]
    fn waits_for_the_line_and_stops_on_drop() {
        let interrupt = Interrupt::install().unwrap();
        let mut service =
            Service::spawn("sh", shell("echo starting; echo ready on 1; exec sleep 30")).unwrap();
        let line = service
            .wait_for_line("ready on", Duration::from_secs(5), interrupt)
            .unwrap();
        assert_eq!(line, "ready on 1");
        let started = Instant::now();
        match service.stop().unwrap() {
            Stopped::Exited(status) => assert!(!status.success(), "{status}"),
            Stopped::Killed => panic!("sleep ignored SIGTERM"),
        }
        assert!(started.elapsed() < STOP_TIMEOUT);
    }

    #[test]
    fn an_early_exit_is_an_error() {
        let interrupt = Interrupt::install().unwrap();
        let mut service = Service::spawn("sh", shell("echo oops; exit 3")).unwrap();
        let error = service
            .wait_for_line("ready", Duration::from_secs(5), interrupt)
            .unwrap_err()
            .to_string();
        assert!(error.contains("exited before it was ready"), "{error}");
    }
}
