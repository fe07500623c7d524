//! nginx as a reverse proxy, for comparison at the same worker count.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::bail;

use super::scenario::command_under;
use crate::process::Service;

/// Finds nginx, installing it with apt-get when running as root.
pub fn ensure_installed() -> anyhow::Result<String> {
    for candidate in ["nginx", "/usr/sbin/nginx"] {
        if Command::new(candidate)
            .arg("-v")
            .stderr(Stdio::null())
            .status()
            .is_ok()
        {
            return Ok(candidate.to_owned());
        }
    }
    println!("bench: nginx not found; installing it with apt-get (Debian package nginx)");
    let quiet = |args: &[&str]| {
        Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(Stdio::null())
            .status()
    };
    let installed = quiet(&["update", "-qq"]).is_ok_and(|s| s.success())
        && quiet(&["install", "-y", "-qq", "--no-install-recommends", "nginx"])
            .is_ok_and(|s| s.success());
    if !installed {
        bail!("nginx is not installed and apt-get could not install it");
    }
    Ok("/usr/sbin/nginx".to_owned())
}

/// How nginx runs.
#[derive(Debug, Clone, Copy)]
pub enum Processes {
    /// A master and this many workers.
    Workers(usize),
    /// One process that serves (for a tool that follows one process).
    Single,
}

/// Starts nginx (run by `launcher`, if any) as `processes`, proxying `listen` to
/// `upstream` over keep-alive connections. Client connections stay open for
/// as many requests as they like, as Tandem's do (nginx's default closes
/// one after 1,000 requests, which the load generator would pay for in
/// reconnections).
pub fn start(
    launcher: &[String],
    binary: &str,
    dir: &Path,
    listen: SocketAddr,
    upstream: SocketAddr,
    processes: Processes,
) -> anyhow::Result<Service> {
    std::fs::create_dir_all(dir.join("tmp"))?;
    let processes = match processes {
        Processes::Workers(workers) => format!("worker_processes {workers};"),
        Processes::Single => "master_process off;\nworker_processes 1;".to_owned(),
    };
    let conf = format!(
        "{processes}\ndaemon off;\npid {dir}/nginx.pid;\nerror_log stderr warn;\n\
         events {{ worker_connections 4096; }}\n\
         http {{\n  access_log off;\n  keepalive_requests 100000000;\n  client_body_temp_path {dir}/tmp;\n  proxy_temp_path {dir}/tmp;\n\
         fastcgi_temp_path {dir}/tmp;\n  uwsgi_temp_path {dir}/tmp;\n  scgi_temp_path {dir}/tmp;\n\
         upstream app {{ server {upstream}; keepalive 256; }}\n\
         server {{\n    listen {listen};\n    location / {{\n      proxy_pass http://app;\n\
         proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n    }}\n  }}\n}}\n",
        dir = dir.display()
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf)?;
    let mut command = command_under(launcher, Path::new(binary));
    command
        .arg("-c")
        .arg(&path)
        .arg("-p")
        .arg(dir)
        .stderr(Stdio::null());
    let service = Service::spawn("nginx", command)?;
    // Under valgrind, starting takes seconds.
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(listen).is_err() {
        if Instant::now() > deadline {
            bail!("nginx did not listen on {listen}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(service)
}
