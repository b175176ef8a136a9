//! A real third-party client against a real server: matrix-nio (Python, from PyPI) registers,
//! logs in, sets and reads back a display name, and logs out (tests-python/nio_smoke.py); two
//! nio clients see each other's invite, message, typing and receipt through /sync
//! (tests-python/nio_sync.py).
//!
//! Uses `$TESSERA_NIO_PYTHON` if set, else `python3`. matrix-nio must be importable by it
//! (`pip install matrix-nio`); if it is not, this test FAILS rather than being skipped.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use complement_tests::{TestServer, V3, Value, enc};

const TIMEOUT: Duration = Duration::from_secs(120);

fn python() -> String {
    std::env::var("TESSERA_NIO_PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("complement-tests lives in the workspace root")
        .join("tests-python")
        .join(name)
}

async fn require_nio() {
    let import = run(&["-c", "import nio"]).await;
    assert!(
        import.status.success(),
        "matrix-nio is not importable by {:?}: run `pip install matrix-nio` (or point \
         TESSERA_NIO_PYTHON at a Python that has it)\n{}",
        python(),
        String::from_utf8_lossy(&import.stderr)
    );
}

async fn run(args: &[&str]) -> std::process::Output {
    let child = tokio::process::Command::new(python())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {:?} ({e}); install Python 3 or set TESSERA_NIO_PYTHON",
                python()
            )
        });
    tokio::time::timeout(TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{} {args:?} did not finish within {TIMEOUT:?}", python()))
        .expect("waiting for python")
}

#[tokio::test]
async fn matrix_nio_registers_logs_in_sets_displayname_and_logs_out() {
    require_nio().await;
    let server = TestServer::start().await;
    let script = script("nio_smoke.py");
    let output = run(&[
        &script.to_string_lossy(),
        &server.base_url(),
        "niouser",
        "nio-password-1",
    ])
    .await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "nio_smoke.py failed ({}):\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
        output.status
    );
    let result: Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("nio_smoke.py printed no JSON result ({e}): {stdout}"));

    // What nio did is what the server now holds.
    let user_id = result["user_id"].as_str().expect("user_id");
    assert_eq!(user_id, server.user_id("niouser"));
    let client = server.client();
    let profile = client
        .get(&format!("{V3}/profile/{}/displayname", enc(user_id)))
        .await
        .ok();
    assert_eq!(profile["displayname"], result["displayname"], "{profile}");
    client
        .with_token(result["access_token"].as_str().expect("access_token"))
        .get(&format!("{V3}/account/whoami"))
        .await
        .assert_error(401, "M_UNKNOWN_TOKEN");
    let user = client.login("niouser", "nio-password-1").await;
    let devices = user.device_ids().await;
    let nio_device = result["device_id"].as_str().expect("device_id");
    assert!(
        !devices.iter().any(|d| d == nio_device),
        "nio's logged-out device {nio_device} still listed: {devices:?}"
    );
}

#[tokio::test]
async fn matrix_nio_clients_see_invites_messages_typing_and_receipts_through_sync() {
    require_nio().await;
    let server = TestServer::start().await;
    let output = run(&[
        &script("nio_sync.py").to_string_lossy(),
        &server.base_url(),
        "nio-sync-password",
    ])
    .await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "nio_sync.py failed ({}):\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
        output.status
    );
    let result: Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("nio_sync.py printed no JSON result ({e}): {stdout}"));

    // The message nio sent is in the room as the server stores it.
    let bob = server.client().login("nio_bob", "nio-sync-password").await;
    let room_id = result["room_id"].as_str().expect("room_id");
    let event_id = result["event_id"].as_str().expect("event_id");
    let event = bob
        .client
        .get(&format!(
            "{V3}/rooms/{}/event/{}",
            enc(room_id),
            enc(event_id)
        ))
        .await
        .ok();
    assert_eq!(event["content"]["body"], "hello from nio", "{event}");
}
