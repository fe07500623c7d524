//! `cargo xtask demo`: builds Tandem, the example plugins and the demo
//! application, writes a demo directory (`target/demo/`), and runs the app
//! with Tandem in front of it until Ctrl-C.
//!
//! With `--smoke` it does the same on free ports (in `target/demo-smoke/`),
//! sends the requests the banner suggests, checks the answers and stops.

use std::fmt::Write as _;
use std::fs;
use std::io::ErrorKind;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use clap::Args;

use crate::http;
use crate::prereq;
use crate::process::{Interrupt, Service, Stopped};
use crate::workspace;

/// How long Tandem may take to compile its plugins and bind.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the demo application may take to bind.
const APP_START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `/readyz` may take to turn 200 once Tandem listens.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// Options of `cargo xtask demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Port of the demo application (Tandem's upstream), on 127.0.0.1.
    #[arg(long, default_value_t = 3000)]
    app_port: u16,
    /// Port of Tandem's proxy listener, on 127.0.0.1.
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Port of Tandem's admin listener, on 127.0.0.1.
    #[arg(long, default_value_t = 9901)]
    admin_port: u16,
    /// Start on free ports, send the example requests, check the answers,
    /// stop, and exit non-zero on any mismatch (the ports above are ignored).
    #[arg(long)]
    smoke: bool,
}

/// Runs `cargo xtask demo`.
pub fn run(args: &DemoArgs) -> anyhow::Result<()> {
    prereq::check()?;
    if args.smoke {
        return smoke();
    }
    let ports = Ports {
        app: args.app_port,
        proxy: args.port,
        admin: args.admin_port,
    };
    ports.check_free()?;
    let interrupt = Interrupt::install()?;
    build()?;
    let dir = workspace::target_dir().join("demo");
    let mut demo = Demo::start(&dir, &ports, Logs::Terminal, interrupt)?;
    demo.app.echo_output();
    demo.tandem.echo_output();
    print!("{}", banner(&demo));
    loop {
        if interrupt.wait_timeout(Duration::from_millis(500)) {
            break;
        }
        for service in [&mut demo.tandem, &mut demo.app] {
            if let Some(status) = service.exited()?
                && !interrupt.requested()
            {
                bail!("a demo process exited unexpectedly ({status}); see its output above");
            }
        }
    }
    println!("\nxtask: stopping tandem, then demo-app");
    let (tandem, app) = demo.stop()?;
    println!(
        "xtask: tandem {}, demo-app {}",
        describe(&tandem),
        describe(&app)
    );
    Ok(())
}

/// Runs the smoke test: the demo on free ports, checked by requests. Fails
/// on any mismatch. The caller has checked the prerequisites.
pub fn smoke() -> anyhow::Result<()> {
    let interrupt = Interrupt::install()?;
    build()?;
    let dir = workspace::target_dir().join("demo-smoke");
    let ports = Ports {
        app: 0,
        proxy: 0,
        admin: 0,
    };
    let demo = match Demo::start(&dir, &ports, Logs::Files, interrupt) {
        Ok(demo) => demo,
        Err(error) => {
            print_log_tails(&dir);
            return Err(error.context("starting the demo"));
        }
    };
    println!(
        "smoke test: tandem proxy={} admin={} in front of demo-app on {}",
        demo.proxy, demo.admin, demo.app_addr
    );
    let mut checks = vec![
        check("GET  /", || check_root(demo.proxy)),
        check("GET  /admin/x", || check_denied(demo.proxy)),
        check("GET  /healthz", || check_health(demo.proxy)),
        check("POST /echo without key", || {
            check_unauthenticated(demo.proxy)
        }),
        check("POST /echo with key", || check_echo(demo.proxy)),
        check("POST /echo x10", || check_rate_limited(demo.proxy)),
        check("GET  admin /plugins", || check_plugins(demo.admin)),
        check("GET  admin /metrics", || check_metrics(demo.admin)),
    ];
    let (tandem, app) = demo.stop()?;
    checks.push(check("stop tandem (SIGTERM)", || stopped_cleanly(&tandem)));
    checks.push(check("stop demo-app (SIGTERM)", || stopped_cleanly(&app)));
    // Stopping flushed the records writer.
    checks.push(check("access log", || check_access_log(&dir)));

    let failed = checks.iter().filter(|c| c.result.is_err()).count();
    for check in &checks {
        match &check.result {
            Ok(detail) => println!("  ok    {:<26} {detail}", check.name),
            Err(mismatch) => println!("  FAIL  {:<26} {mismatch}", check.name),
        }
    }
    if failed > 0 {
        print_log_tails(&dir);
        bail!(
            "smoke test: {failed} of {} checks failed; logs are in {}",
            checks.len(),
            dir.display()
        );
    }
    println!("smoke test passed: {} checks", checks.len());
    Ok(())
}

/// Prints the end of each service's log, for a failed smoke test.
fn print_log_tails(dir: &Path) {
    const LINES: usize = 20;
    for name in ["demo-app", "tandem"] {
        let path = dir.join(format!("{name}.log"));
        let Ok(text) = fs::read_to_string(&path) else {
            continue;
        };
        let lines: Vec<&str> = text.lines().collect();
        println!("--- last lines of {}", relative(&path));
        for line in &lines[lines.len().saturating_sub(LINES)..] {
            println!("{line}");
        }
    }
}

fn build() -> anyhow::Result<()> {
    workspace::build_plugins()?;
    workspace::build_binaries()
}

/// The three listening ports; 0 picks a free one.
struct Ports {
    app: u16,
    proxy: u16,
    admin: u16,
}

impl Ports {
    /// Fails, naming the port and its flag, if a port is taken (checked
    /// before the long build, so a busy port is reported at once).
    fn check_free(&self) -> anyhow::Result<()> {
        let ports = [
            (self.app, "the demo application", "--app-port"),
            (self.proxy, "Tandem's proxy listener", "--port"),
            (self.admin, "Tandem's admin listener", "--admin-port"),
        ];
        for (i, (port, what, flag)) in ports.iter().enumerate() {
            if *port == 0 {
                continue;
            }
            if let Some((_, other, _)) = ports[..i].iter().find(|(p, _, _)| p == port) {
                bail!(
                    "port {port} is given to both {other} and {what}; choose another with {flag}"
                );
            }
            match TcpListener::bind(("127.0.0.1", *port)) {
                Ok(_) => {}
                Err(error) if error.kind() == ErrorKind::AddrInUse => bail!(
                    "port {port} ({what}) is already in use on 127.0.0.1: stop whatever \
                     listens there, or choose another port with {flag} <PORT>"
                ),
                Err(error) => bail!("cannot use port {port} ({what}, {flag}): {error}"),
            }
        }
        Ok(())
    }
}

/// Where the services' stderr goes.
enum Logs {
    /// The terminal, for the interactive demo.
    Terminal,
    /// `NAME.log` in the demo directory, for the smoke test.
    Files,
}

impl Logs {
    fn stderr(&self, dir: &Path, name: &str) -> anyhow::Result<Stdio> {
        Ok(match self {
            Logs::Terminal => Stdio::inherit(),
            Logs::Files => {
                let path = dir.join(format!("{name}.log"));
                fs::File::create(&path)
                    .with_context(|| format!("cannot create {}", path.display()))?
                    .into()
            }
        })
    }
}

/// The demo application with Tandem in front of it. Dropping it stops
/// both, Tandem first (fields drop in order).
struct Demo {
    tandem: Service,
    app: Service,
    app_addr: SocketAddr,
    proxy: SocketAddr,
    admin: SocketAddr,
    dir: PathBuf,
}

impl Demo {
    /// Writes the demo directory, starts the app and Tandem, and waits for
    /// Tandem's `/readyz`.
    fn start(dir: &Path, ports: &Ports, logs: Logs, interrupt: &Interrupt) -> anyhow::Result<Demo> {
        write_plugins(dir)?;

        let mut app_command = Command::new(workspace::release_binary("demo-app"));
        app_command
            .args(["--listen", &format!("127.0.0.1:{}", ports.app)])
            .stderr(logs.stderr(dir, "demo-app")?);
        let mut app = Service::spawn("demo-app", app_command)?;
        let line = app.wait_for_line("demo-app listening on ", APP_START_TIMEOUT, interrupt)?;
        let app_addr: SocketAddr = line
            .trim_start_matches("demo-app listening on ")
            .trim()
            .parse()
            .with_context(|| format!("cannot read the address in {line:?}"))?;

        let config = dir.join("tandem.toml");
        write(&config, &tandem_toml(&config, app_addr, ports))?;
        let mut tandem_command = Command::new(workspace::release_binary("tandem"));
        tandem_command
            .arg("run")
            .arg("--config")
            .arg(&config)
            .stderr(logs.stderr(dir, "tandem")?);
        if let Logs::Files = logs {
            // Tandem colours its log even when it is not a terminal.
            tandem_command.env("NO_COLOR", "1");
        }
        // The file must be what runs: a TANDEM_* setting in the caller's
        // environment would override it.
        for name in [
            "TANDEM_CONFIG",
            "TANDEM_LISTEN",
            "TANDEM_UPSTREAM",
            "TANDEM_ADMIN",
            "TANDEM_PLUGINS_DIR",
        ] {
            tandem_command.env_remove(name);
        }
        let mut tandem = Service::spawn("tandem", tandem_command)?;
        let line = tandem.wait_for_line("tandem listening ", START_TIMEOUT, interrupt)?;
        let address = |key: &str| -> anyhow::Result<SocketAddr> {
            line.split_whitespace()
                .find_map(|word| word.strip_prefix(key))
                .and_then(|value| value.parse().ok())
                .with_context(|| format!("no `{key}ADDR` in tandem's line {line:?}"))
        };
        let proxy = address("proxy=")?;
        let admin = address("admin=")?;
        wait_ready(admin, interrupt)?;
        Ok(Demo {
            tandem,
            app,
            app_addr,
            proxy,
            admin,
            dir: dir.to_owned(),
        })
    }

    /// Stops Tandem, then the app, and says how each ended.
    fn stop(self) -> anyhow::Result<(Stopped, Stopped)> {
        let tandem = self.tandem.stop()?;
        let app = self.app.stop()?;
        Ok((tandem, app))
    }
}

/// Polls `/readyz` until it answers 200: the plugins are loaded and the
/// upstream accepts connections.
fn wait_ready(admin: SocketAddr, interrupt: &Interrupt) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + READY_TIMEOUT;
    loop {
        let last = match http::get(admin, "/readyz") {
            Ok(response) if response.status == 200 => return Ok(()),
            Ok(response) => format!("{} {}", response.status, response.text().trim()),
            Err(error) => format!("{error:#}"),
        };
        if std::time::Instant::now() > deadline {
            bail!("tandem's /readyz did not answer 200 within {READY_TIMEOUT:?}; last: {last}");
        }
        if interrupt.wait_timeout(Duration::from_millis(100)) {
            bail!("interrupted while waiting for /readyz");
        }
    }
}

/// The API key the demo accepts on `POST /echo`.
const DEMO_KEY: &str = "demo-key";

/// The demo's chain: the four first-party concern plugins and the two
/// examples, with the settings written next to them. Order decides the
/// request path (lower first); the response path runs in reverse.
const DEMO_PLUGINS: &[(&str, &str)] = &[
    (
        "access-log",
        "# See plugins/access-log/README.md. First on the request path, so it\n\
         # sees every exchange; records go to the file sink of tandem.toml.\n\
         order = 0\n\
         failure = \"open\"\n\
         \n\
         [config]\n\
         skip_paths = [\"/healthz\"]\n\
         request_headers = [\"x-api-key\", \"accept\"]\n\
         redact_headers = [\"authorization\", \"cookie\", \"proxy-authorization\", \"set-cookie\", \"x-api-key\"]\n",
    ),
    (
        "metrics",
        "# See plugins/metrics/README.md. RED metrics per route on admin /metrics.\n\
         order = 1\n\
         failure = \"open\"\n\
         \n\
         [config]\n\
         routes = [\"/\", \"/echo\", \"/slow\", \"/healthz\"]\n",
    ),
    (
        "auth",
        "# See plugins/auth/README.md. POST /echo needs an API key; the rest is public.\n\
         order = 10\n\
         failure = \"closed\"\n\
         \n\
         [config]\n\
         realm = \"demo\"\n\
         default_access = \"public\"\n\
         \n\
         [config.api_keys]\n\
         header = \"x-api-key\"\n\
         \n\
         [[config.api_keys.keys]]\n\
         id = \"demo-client\"\n\
         # printf %s demo-key | sha256sum\n\
         sha256 = \"c48a01f49fd0f2cc404bc3cbbc80e91457a3d41bb429a695243de4c61794155c\"\n\
         \n\
         [[config.rules]]\n\
         prefix = \"/echo\"\n\
         access = \"authenticated\"\n",
    ),
    (
        "rate-limit",
        "# See plugins/rate-limit/README.md. 1 POST /echo per second per caller, 3 at once.\n\
         order = 20\n\
         failure = \"open\"\n\
         \n\
         [config]\n\
         [[config.rules]]\n\
         name = \"echo\"\n\
         prefix = \"/echo\"\n\
         rate = 1\n\
         burst = 3\n\
         key = [\"api-key\", \"client-addr\"]\n",
    ),
    (
        "add-header",
        "# See plugins/add-header/README.md. Only cosmetic: a failure skips it.\n\
         order = 30\n\
         failure = \"open\"\n\
         \n\
         [config]\n\
         headers = { \"x-served-by\" = \"tandem\" }\n",
    ),
    (
        "deny-path",
        "# See plugins/deny-path/README.md. A broken deny-path must fail requests,\n\
         # not let them through.\n\
         order = 40\n\
         failure = \"closed\"\n\
         \n\
         [config]\n\
         prefixes = [\"/admin\"]\n\
         status = 403\n",
    ),
];

/// The file the access-log plugin's records go to, next to tandem.toml.
const ACCESS_LOG_FILE: &str = "access.log";

/// Copies the plugins and writes their settings.
fn write_plugins(dir: &Path) -> anyhow::Result<()> {
    let plugins = dir.join("plugins");
    // Start clean, so no plugin from an earlier run lingers in the chain.
    if plugins.exists() {
        fs::remove_dir_all(&plugins)
            .with_context(|| format!("cannot empty {}", plugins.display()))?;
    }
    fs::create_dir_all(&plugins).with_context(|| format!("cannot create {}", plugins.display()))?;
    // And a fresh access log, so the smoke test reads only this run's.
    let _ = fs::remove_file(dir.join(ACCESS_LOG_FILE));
    for (name, settings) in DEMO_PLUGINS {
        let component = workspace::plugin_component(name);
        let copy = plugins.join(format!("{name}.wasm"));
        fs::copy(&component, &copy).with_context(|| {
            format!("cannot copy {} to {}", component.display(), copy.display())
        })?;
        write(
            &plugins.join(format!("{name}.toml")),
            &format!("# Written by `cargo xtask demo`.\n{settings}"),
        )?;
    }
    Ok(())
}

fn tandem_toml(path: &Path, app: SocketAddr, ports: &Ports) -> String {
    format!(
        "# Written by `cargo xtask demo`. Run it again by hand with\n\
         #   target/release/tandem run --config {config}\n\
         listen = \"127.0.0.1:{proxy}\"\n\
         upstream = \"http://{app}\"\n\
         admin = \"127.0.0.1:{admin}\"\n\
         # Stop quickly when the demo ends.\n\
         shutdown_grace_ms = 2000\n\
         \n\
         [plugins]\n\
         dir = \"plugins\"\n\
         \n\
         # Access records (from the access-log plugin), one JSON line each.\n\
         [records]\n\
         sink = \"file\"\n\
         path = \"{ACCESS_LOG_FILE}\"\n",
        config = relative(path),
        proxy = ports.proxy,
        admin = ports.admin,
    )
}

/// `path` relative to the repository root, if it is inside it.
fn relative(path: &Path) -> String {
    path.strip_prefix(workspace::root())
        .unwrap_or(path)
        .display()
        .to_string()
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

fn banner(demo: &Demo) -> String {
    let proxy = format!("localhost:{}", demo.proxy.port());
    let admin = format!("localhost:{}", demo.admin.port());
    let mut text = String::new();
    let _ = writeln!(
        text,
        "\nTandem is running in front of demo-app, with six plugins (request path in this order):\n\
         \x20 access-log (order 0)   one JSON line per request to {access_log}\n\
         \x20 metrics    (order 1)   RED metrics per route on admin /metrics\n\
         \x20 auth       (order 10)  POST /echo needs `x-api-key: {DEMO_KEY}`; the rest is public\n\
         \x20 rate-limit (order 20)  POST /echo: 3 at once, then 1 per second per caller\n\
         \x20 add-header (order 30)  sets `x-served-by: tandem` on every response\n\
         \x20 deny-path  (order 40)  answers 403 to paths under /admin\n\
         \n\
         \x20 proxy   http://{}  ->  demo-app http://{}\n\
         \x20 admin   http://{}\n\
         \x20 config  {}\n\
         \n\
         Try:\n\
         \x20 curl -i {proxy}/                         # the request as the app saw it; note x-served-by and x-request-id\n\
         \x20 curl -i {proxy}/admin/x                  # 403 from deny-path; the app never sees it\n\
         \x20 curl -i -d hello {proxy}/echo            # 401 from auth: no API key\n\
         \x20 curl -i -H 'x-api-key: {DEMO_KEY}' -d hello {proxy}/echo   # 200, with RateLimit headers\n\
         \x20 for i in 1 2 3 4 5; do curl -s -o /dev/null -w '%{{http_code}} ' -H 'x-api-key: {DEMO_KEY}' -d x {proxy}/echo; done; echo   # 429s\n\
         \x20 tail {access_log}              # the access records, x-api-key redacted\n\
         \x20 curl -s {admin}/plugins                  # the chain, as JSON\n\
         \x20 curl -s {admin}/metrics | grep -E '^(tandem_|http_|auth_|rate_limit)'   # metrics\n\
         \n\
         Press Ctrl-C to stop.",
        demo.proxy,
        demo.app_addr,
        demo.admin,
        relative(&demo.dir.join("tandem.toml")),
        access_log = relative(&demo.dir.join(ACCESS_LOG_FILE)),
    );
    text
}

/// One smoke check: a name and what was seen, or the mismatch.
struct Check {
    name: &'static str,
    result: Result<String, String>,
}

fn check(name: &'static str, run: impl FnOnce() -> anyhow::Result<String>) -> Check {
    Check {
        name,
        result: run().map_err(|error| format!("{error:#}")),
    }
}

fn check_root(proxy: SocketAddr) -> anyhow::Result<String> {
    let response = http::get(proxy, "/?from=smoke")?;
    ensure!(
        response.status == 200,
        "expected 200, got {}",
        response.status
    );
    let served_by = response.header("x-served-by");
    ensure!(
        served_by == Some("tandem"),
        "expected x-served-by: tandem (add-header), got {served_by:?}"
    );
    let seen = response.json()?;
    ensure!(
        seen["path"] == "/" && seen["query"] == "from=smoke",
        "the app saw {} ?{}, not / ?from=smoke",
        seen["path"],
        seen["query"]
    );
    let forwarded_for = seen["headers"]["x-forwarded-for"]
        .as_str()
        .context("the app saw no x-forwarded-for")?;
    Ok(format!(
        "200, x-served-by: tandem; the app saw x-forwarded-for: {forwarded_for}"
    ))
}

fn check_denied(proxy: SocketAddr) -> anyhow::Result<String> {
    let response = http::get(proxy, "/admin/x")?;
    ensure!(
        response.status == 403,
        "expected 403 from deny-path, got {}",
        response.status
    );
    let body = response.json()?;
    ensure!(
        body["error"] == "forbidden",
        "expected deny-path's {{\"error\":\"forbidden\"}}, got {}",
        response.text()
    );
    // add-header's on-response runs on deny-path's reply too: it comes first
    // in the chain, so it is among the plugins the request reached.
    let served_by = response.header("x-served-by");
    ensure!(
        served_by == Some("tandem"),
        "expected add-header to mark the 403 too, got x-served-by {served_by:?}"
    );
    Ok(format!("403 from deny-path, {}", response.text().trim()))
}

fn check_health(proxy: SocketAddr) -> anyhow::Result<String> {
    let response = http::get(proxy, "/healthz")?;
    ensure!(
        response.status == 200,
        "expected 200, got {}",
        response.status
    );
    // The access log must not record it (skip_paths): see the last check.
    Ok("200 (access-log skips it)".into())
}

fn check_unauthenticated(proxy: SocketAddr) -> anyhow::Result<String> {
    let response = http::post(proxy, "/echo", b"who am I")?;
    ensure!(
        response.status == 401,
        "expected 401 from auth, got {}",
        response.status
    );
    let challenge = response.header("www-authenticate").unwrap_or_default();
    ensure!(
        challenge.starts_with("Bearer realm=\"demo\""),
        "expected a Bearer challenge, got {challenge:?}"
    );
    Ok(format!("401 from auth, www-authenticate: {challenge}"))
}

fn check_echo(proxy: SocketAddr) -> anyhow::Result<String> {
    let sent = b"hello through tandem";
    let response = http::post_with(proxy, "/echo", sent, &[("x-api-key", DEMO_KEY)])?;
    ensure!(
        response.status == 200,
        "expected 200, got {}",
        response.status
    );
    ensure!(
        response.body == sent,
        "expected the body back, got {:?}",
        response.text()
    );
    let quota = response.header("ratelimit").unwrap_or_default();
    ensure!(
        !quota.is_empty(),
        "expected a RateLimit header from rate-limit"
    );
    Ok(format!(
        "200, {} bytes back, ratelimit: {quota}",
        response.body.len()
    ))
}

fn check_rate_limited(proxy: SocketAddr) -> anyhow::Result<String> {
    // The rule allows 3 at once, then 1 per second: ten in a row overflow it.
    let mut statuses = Vec::new();
    for _ in 0..10 {
        let response = http::post_with(proxy, "/echo", b"again", &[("x-api-key", DEMO_KEY)])?;
        if response.status == 429 {
            let retry_after = response.header("retry-after").unwrap_or_default();
            ensure!(!retry_after.is_empty(), "a 429 without Retry-After");
            statuses.push(response.status);
            return Ok(format!(
                "429 from rate-limit after {} allowed, retry-after: {retry_after}",
                statuses.len() - 1
            ));
        }
        ensure!(
            response.status == 200,
            "expected 200 or 429, got {}",
            response.status
        );
        statuses.push(response.status);
    }
    bail!("ten requests at once were all allowed: {statuses:?}")
}

fn check_access_log(dir: &Path) -> anyhow::Result<String> {
    let path = dir.join(ACCESS_LOG_FILE);
    let text =
        fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let records: Vec<serde_json::Value> = text
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()
        .context("an access record is not JSON")?;
    let echo = records
        .iter()
        .find(|r| r["method"] == "POST" && r["path"] == "/echo" && r["status"] == 200)
        .context("no access record of the allowed POST /echo")?;
    ensure!(
        echo["auth_subject"] == "demo-client",
        "expected auth_subject demo-client, got {}",
        echo["auth_subject"]
    );
    ensure!(
        echo["request_headers"]["x-api-key"] == "[REDACTED]",
        "the API key is not redacted: {}",
        echo["request_headers"]
    );
    ensure!(
        !records.iter().any(|r| r["path"] == "/healthz"),
        "/healthz is logged although skipped"
    );
    Ok(format!(
        "{} records; POST /echo by demo-client, x-api-key [REDACTED]",
        records.len()
    ))
}

fn check_plugins(admin: SocketAddr) -> anyhow::Result<String> {
    let response = http::get(admin, "/plugins")?;
    ensure!(
        response.status == 200,
        "expected 200, got {}",
        response.status
    );
    let json = response.json()?;
    let plugins = json["plugins"]
        .as_array()
        .context("no `plugins` list in /plugins")?;
    let names: Vec<&str> = plugins.iter().filter_map(|p| p["name"].as_str()).collect();
    let expected: Vec<&str> = DEMO_PLUGINS.iter().map(|(name, _)| *name).collect();
    ensure!(
        names == expected,
        "expected {expected:?} in chain order, got {names:?}"
    );
    for plugin in plugins {
        ensure!(
            plugin["state"] == "serving",
            "{} is {} ({})",
            plugin["name"],
            plugin["state"],
            plugin["error"]
        );
    }
    let shown: Vec<String> = plugins
        .iter()
        .map(|p| {
            format!("{} (order {}, hooks {})", p["name"], p["order"], p["hooks"]).replace('"', "")
        })
        .collect();
    Ok(format!("200, serving: {}", shown.join(", ")))
}

fn check_metrics(admin: SocketAddr) -> anyhow::Result<String> {
    let response = http::get(admin, "/metrics")?;
    ensure!(
        response.status == 200,
        "expected 200, got {}",
        response.status
    );
    let text = response.text();
    let samples = text
        .lines()
        .filter(|line| line.starts_with("tandem_"))
        .count();
    ensure!(samples > 0, "no tandem_ samples in /metrics");
    for metric in [
        "deny_path_rejections_total",
        "http_requests_total{",
        "auth_decisions_total{",
    ] {
        ensure!(
            text.contains(metric),
            "no {metric} (a plugin's own metric) in /metrics"
        );
    }
    Ok(format!(
        "200, {samples} tandem_ samples, http_requests_total (metrics), auth_decisions_total, deny_path_rejections_total"
    ))
}

fn stopped_cleanly(stopped: &Stopped) -> anyhow::Result<String> {
    match stopped {
        Stopped::Exited(status) if status.success() => Ok(describe(stopped)),
        _ => bail!("{}", describe(stopped)),
    }
}

fn describe(stopped: &Stopped) -> String {
    match stopped {
        Stopped::Exited(status) => format!("exited ({status})"),
        Stopped::Killed => "ignored SIGTERM and was killed".into(),
    }
}
