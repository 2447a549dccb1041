//! The real client path: users placed by the `control` binary (`GET /v1/connect` → signed
//! token) on a gateway that requires tokens, then direct messages with `--verify`. Skipped
//! (said on stderr) while the gateway has no working binary.

mod support;

use std::process::Command;

use support::{build_bin, direct_smoke, fig, free_addr, gateway_with, start};

const SECRET: &str = "loadgen-test-secret-0123456789";

#[test]
fn users_placed_by_control_reach_a_token_checking_gateway() {
    let Some(gw) = gateway_with(&[
        "--ring-secret",
        SECRET,
        "--require-token",
        "--node-id",
        "gw-1",
    ]) else {
        return;
    };
    let control_bin =
        build_bin("control", "control").unwrap_or_else(|e| panic!("control does not build: {e}"));
    let addr = free_addr();
    let _control = start(
        &control_bin,
        &[
            "serve".into(),
            "--listen".into(),
            addr.to_string(),
            "--ring-secret".into(),
            SECRET.into(),
        ],
        addr,
    );
    let control = format!("http://{addr}");
    let added = Command::new(&control_bin)
        .args([
            "ring",
            "add",
            "gw-1",
            "--url",
            &control,
            "--ws-url",
            &format!("ws://{}/ws", gw.addr),
        ])
        .output()
        .expect("control ring add");
    assert!(
        added.status.success(),
        "ring add: {}",
        String::from_utf8_lossy(&added.stderr)
    );

    let r = direct_smoke(["--control", &control]);
    assert_eq!(fig(&r, "connect.peak_connected"), 20.0);
}
