//! A plugin gets no files, sockets, environment or fine clock: its code
//! tries each with the standard library and reports what happened.

use http::StatusCode;

use crate::support::client::get;
use crate::support::tandem::TandemBuilder;
use crate::support::upstream::Upstream;

#[tokio::test]
async fn files_sockets_environment_and_fine_clocks_are_denied() {
    let upstream = Upstream::start().await;
    let tandem = TandemBuilder::new(format!("http://{}", upstream.addr))
        .plugin(
            "probe",
            "sandbox-probe",
            &format!("[config]\nconnect = \"{}\"\n", upstream.addr),
        )
        .spawn()
        .await;
    let reply = get(&tandem.url("/")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let header = |name: &str| reply.header(name).unwrap_or("(missing)").to_owned();
    for name in [
        "x-fs-read",
        "x-fs-write",
        "x-fs-list-root",
        "x-fs-list-cwd",
        "x-net-connect",
        "x-net-udp",
        "x-net-lookup",
        "x-env-home",
    ] {
        assert!(
            header(name).starts_with("denied: "),
            "{name}: {}",
            header(name)
        );
    }
    assert_eq!(header("x-env-count"), "0", "no environment variables");
    assert_eq!(header("x-args-count"), "0", "no arguments");
    assert_eq!(
        header("x-clock-wall-sub-ms-nanos"),
        "0",
        "the wall clock reads in whole milliseconds"
    );
    assert_eq!(
        header("x-clock-mono-sub-ms-nanos"),
        "0",
        "the monotonic clock reads in whole milliseconds"
    );
    assert!(
        upstream.seen().is_empty(),
        "the plugin's connection attempt never reached the upstream"
    );
    assert!(
        !std::path::Path::new("/tmp/tandem-sandbox-probe").exists(),
        "nothing was written"
    );
}
