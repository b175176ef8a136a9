//! The command line: `tessera user create|list|reset-password|deactivate` on the database
//! directly, `tessera check-config`, `tessera key rotate`'s refusals, and `tessera serve`
//! start-up behaviour.

use std::path::{Path, PathBuf};
use std::time::Duration;

use complement_tests::{CliOutput, TestServer, run_tessera, wait_until};

/// A server whose directory, config and database exist, but which is not running.
async fn stopped_server() -> TestServer {
    TestServer::builder().prepare().await
}

fn config_with(
    server: &TestServer,
    edit: impl FnOnce(&mut toml::Table),
) -> (tempfile::TempDir, PathBuf) {
    let text = std::fs::read_to_string(server.config_path()).expect("read the harness config");
    let mut config: toml::Table = text.parse().expect("the harness config is TOML");
    edit(&mut config);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("edited.toml");
    std::fs::write(&path, toml::to_string(&config).expect("serialise")).expect("write config");
    (dir, path)
}

async fn check_config(path: &Path) -> CliOutput {
    run_tessera(&["check-config", "--config", &path.to_string_lossy()]).await
}

/// Exit code 2, and the message (stdout or stderr) names `key`.
#[track_caller]
fn assert_config_error(output: &CliOutput, key: &str) {
    assert_eq!(output.code, Some(2), "expected exit code 2: {output}");
    assert!(
        output.stderr.contains(key) || output.stdout.contains(key),
        "the error message should name {key:?}: {output}"
    );
}

#[tokio::test]
async fn user_create_on_a_stopped_server_then_login() {
    let mut server = stopped_server().await;
    server
        .cli(&["user", "create", "alice", "--password", "alice-password-1"])
        .await
        .success();
    server
        .cli(&[
            "user",
            "create",
            "boss",
            "--password",
            "boss-password-1",
            "--admin",
        ])
        .await
        .success();
    server.run().await;
    let client = server.client();
    let alice = client.login("alice", "alice-password-1").await;
    assert_eq!(alice.user_id, server.user_id("alice"));
    alice.assert_token_valid().await;
    client.login("boss", "boss-password-1").await;
    client
        .login_password("alice", "wrong")
        .await
        .assert_error(403, "M_FORBIDDEN");
}

#[tokio::test]
async fn user_create_refuses_duplicates_and_bad_names() {
    let mut server = stopped_server().await;
    server
        .cli(&["user", "create", "alice", "--password", "first-password"])
        .await
        .success();
    let duplicate = server
        .cli(&["user", "create", "alice", "--password", "second-password"])
        .await;
    assert_ne!(
        duplicate.code,
        Some(0),
        "duplicate user must fail: {duplicate}"
    );
    let invalid = server
        .cli(&["user", "create", "Not Valid", "--password", "some-password"])
        .await;
    assert_ne!(
        invalid.code,
        Some(0),
        "invalid localpart must fail: {invalid}"
    );

    server.run().await;
    let client = server.client();
    client.login("alice", "first-password").await;
    client
        .login_password("alice", "second-password")
        .await
        .assert_error(403, "M_FORBIDDEN");
}

#[tokio::test]
async fn user_create_while_the_server_runs() {
    let server = TestServer::start().await;
    server
        .cli(&["user", "create", "live", "--password", "live-password-1"])
        .await
        .success();
    server.client().login("live", "live-password-1").await;
}

#[tokio::test]
async fn user_list_shows_all_users() {
    let server = TestServer::start().await;
    server.client().register("alice", "alice-password-1").await;
    server
        .cli(&["user", "create", "bob", "--password", "bob-password-1"])
        .await
        .success();
    let output = server.cli(&["user", "list"]).await;
    let stdout = output.success();
    for name in ["alice", "bob"] {
        assert!(
            stdout.contains(name),
            "{name} missing from the list: {output}"
        );
    }
    assert!(
        !stdout.contains("carol"),
        "the list shows a user that does not exist: {output}"
    );
}

#[tokio::test]
async fn reset_password_on_a_stopped_server() {
    let mut server = TestServer::start().await;
    let alice = server.client().register("alice", "old-password-1").await;
    server.stop();
    server
        .cli(&[
            "user",
            "reset-password",
            "alice",
            "--password",
            "new-password-2",
        ])
        .await
        .success();
    server.run().await;
    let client = server.client();
    client
        .login_password("alice", "old-password-1")
        .await
        .assert_error(403, "M_FORBIDDEN");
    let again = client.login("alice", "new-password-2").await;
    assert_eq!(again.user_id, alice.user_id);
}

#[tokio::test]
async fn deactivate_on_a_stopped_server() {
    let mut server = TestServer::start().await;
    let alice = server.client().register("alice", "alice-password-1").await;
    let bob = server.client().register("bob", "bob-password-1").await;
    server.stop();
    server.cli(&["user", "deactivate", "alice"]).await.success();
    server.run().await;
    server
        .client()
        .login_password("alice", "alice-password-1")
        .await
        .assert_error_in(403, &["M_FORBIDDEN", "M_USER_DEACTIVATED"]);
    alice.assert_token_invalid().await;
    bob.assert_token_valid().await;
}

/// A running server caches access tokens; a deactivation by the CLI (another process) reaches
/// it once its entries expire (core `TOKEN_CACHE_TTL`, 5 s).
#[tokio::test]
async fn deactivate_while_the_server_runs_revokes_tokens_shortly() {
    let server = TestServer::start().await;
    let alice = server.client().register("alice", "alice-password-1").await;
    let bob = server.client().register("bob", "bob-password-1").await;
    alice.assert_token_valid().await;
    server.cli(&["user", "deactivate", "alice"]).await.success();
    wait_until(
        "alice's token to be refused",
        Duration::from_secs(20),
        || async { (alice.whoami().await.status == 401).then_some(()) },
    )
    .await;
    alice.assert_token_invalid().await;
    bob.assert_token_valid().await;
}

#[tokio::test]
async fn sessions_survive_a_restart() {
    let mut server = TestServer::start().await;
    let alice = server.client().register("alice", "alice-password-1").await;
    server.stop();
    server.run().await;
    alice.assert_token_valid().await;
    server.client().login("alice", "alice-password-1").await;
}

#[tokio::test]
async fn serve_logs_its_listener_and_how_to_create_the_first_admin() {
    let server = TestServer::start().await;
    let url = server.base_url();
    let log = wait_until(
        "the start-up log lines",
        Duration::from_secs(10),
        || async {
            let log = server.log();
            (log.contains(&url) && log.contains("user create")).then_some(log)
        },
    )
    .await;
    assert!(log.contains(&url));
}

#[tokio::test]
async fn serve_creates_a_private_signing_key() {
    use std::os::unix::fs::PermissionsExt;
    let server = TestServer::start().await;
    let data_dir = server
        .config_path()
        .parent()
        .expect("config in the temp dir")
        .join("data");
    let mut keys = Vec::new();
    let mut pending = vec![data_dir.clone()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir)
            .expect("data dir readable")
            .flatten()
        {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let name = entry.file_name().to_string_lossy().to_lowercase();
                if name.contains("key") || name.contains("ed25519") || name.contains("signing") {
                    keys.push(path);
                }
            }
        }
    }
    assert!(
        !keys.is_empty(),
        "no signing key file (name containing key/ed25519/signing) under {}",
        data_dir.display()
    );
    for key in keys {
        let mode = std::fs::metadata(&key).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{} has mode {mode:o}", key.display());
    }
}

#[tokio::test]
async fn check_config_accepts_a_valid_config() {
    let server = stopped_server().await;
    check_config(server.config_path()).await.success();
}

#[tokio::test]
async fn check_config_names_an_unknown_key() {
    let server = stopped_server().await;
    let (_dir, path) = config_with(&server, |c| {
        c.insert("bogus_top_level_key".into(), 1.into());
    });
    assert_config_error(&check_config(&path).await, "bogus_top_level_key");

    let (_dir, path) = config_with(&server, |c| {
        c["registration"]
            .as_table_mut()
            .expect("registration table")
            .insert("bogus_nested_key".into(), true.into());
    });
    assert_config_error(&check_config(&path).await, "bogus_nested_key");
}

#[tokio::test]
async fn check_config_names_a_bad_server_name() {
    let server = stopped_server().await;
    let (_dir, path) = config_with(&server, |c| {
        c.insert("server_name".into(), "not a server name!".into());
    });
    assert_config_error(&check_config(&path).await, "server_name");
}

#[tokio::test]
async fn check_config_names_a_port_out_of_range() {
    let server = stopped_server().await;
    let (_dir, path) = config_with(&server, |c| {
        c["listeners"][0]["port"] = 70000.into();
    });
    assert_config_error(&check_config(&path).await, "port");

    let (_dir, path) = config_with(&server, |c| {
        c["listeners"][0]["port"] = "eighty".into();
    });
    assert_config_error(&check_config(&path).await, "port");
}

#[tokio::test]
async fn missing_config_file_exits_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("does-not-exist.toml");
    let missing = missing.to_string_lossy();
    for command in ["check-config", "serve"] {
        let output = run_tessera(&[command, "--config", &missing]).await;
        assert_eq!(output.code, Some(2), "{output}");
    }
}

#[tokio::test]
async fn serve_refuses_an_invalid_config() {
    let server = stopped_server().await;
    let (_dir, path) = config_with(&server, |c| {
        c.insert("bogus_top_level_key".into(), 1.into());
    });
    let output = run_tessera(&["serve", "--config", &path.to_string_lossy()]).await;
    assert_config_error(&output, "bogus_top_level_key");
}

#[tokio::test]
async fn key_rotate_refuses_a_missing_key_and_a_malformed_old_key_list() {
    let server = stopped_server().await;
    let config = server.config_path().to_string_lossy().into_owned();
    // A server never started has no key to rotate.
    let _ = std::fs::remove_file(server.signing_key_path());
    let missing = run_tessera(&["key", "rotate", "--config", &config]).await;
    assert_eq!(missing.code, Some(1), "{missing}");
    assert!(missing.stderr.contains("no signing key"), "{missing}");

    // A key and a damaged list of old keys: refused, naming the line; the key is kept.
    let key_path = server.signing_key_path();
    std::fs::create_dir_all(key_path.parent().expect("the data directory")).expect("data dir");
    std::fs::write(
        server.signing_key_path(),
        "ed25519 a_test AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n",
    )
    .expect("write a key");
    let mut old_list = server.signing_key_path().into_os_string();
    old_list.push(".old");
    std::fs::write(&old_list, "not a key line\n").expect("write the old key list");
    let damaged = run_tessera(&["key", "rotate", "--config", &config]).await;
    assert_eq!(damaged.code, Some(1), "{damaged}");
    assert!(damaged.stderr.contains("line 1"), "{damaged}");
    let key = std::fs::read_to_string(server.signing_key_path()).expect("the key stays");
    assert!(key.contains("a_test"), "{key}");
}
