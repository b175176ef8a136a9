//! TLS listeners (`tls_certificate` + `tls_private_key`): the same APIs over HTTPS, as
//! federation peers such as Synapse require, beside a plain listener.

use complement_tests::{TestServer, run_tessera};

/// A self-signed certificate for `localhost`, as PEM (certificate, private key).
fn self_signed() -> (String, String) {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
        .expect("generate a self-signed certificate");
    (certified.cert.pem(), certified.signing_key.serialize_pem())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("cannot bind a loopback port")
}

#[tokio::test]
async fn tls_listener_serves_client_and_federation_apis() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, &cert).unwrap();
    std::fs::write(&key_path, &key).unwrap();
    let tls_port = free_port();
    let mut listener = toml::Table::new();
    listener.insert("bind".into(), "127.0.0.1".into());
    listener.insert("port".into(), i64::from(tls_port).into());
    listener.insert("apis".into(), vec!["client", "federation"].into());
    listener.insert(
        "tls_certificate".into(),
        cert_path.display().to_string().into(),
    );
    listener.insert(
        "tls_private_key".into(),
        key_path.display().to_string().into(),
    );
    let server = TestServer::builder().extra_listener(listener).start().await;

    let https = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.as_bytes()).unwrap())
        .build()
        .unwrap();
    let base = format!("https://localhost:{tls_port}");
    let versions = https
        .get(format!("{base}/_matrix/client/versions"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("HTTPS request failed: {e}\n{}", server.log()));
    assert_eq!(versions.status(), 200);
    let keys: serde_json::Value = https
        .get(format!("{base}/_matrix/key/v2/server"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(keys["server_name"], server.server_name(), "{keys}");

    // The TLS port speaks only TLS.
    let plain = reqwest::get(format!(
        "http://127.0.0.1:{tls_port}/_matrix/client/versions"
    ))
    .await;
    assert!(
        plain.map_or(true, |r| !r.status().is_success()),
        "plain HTTP must not be served on the TLS port"
    );
}

#[tokio::test]
async fn half_a_tls_configuration_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tessera.toml");
    std::fs::write(
        &config,
        "server_name = \"localhost\"\n[[listeners]]\nbind = \"127.0.0.1\"\nport = 8448\n\
         apis = [\"federation\"]\ntls_certificate = \"/nonexistent/cert.pem\"\n",
    )
    .unwrap();
    let out = run_tessera(&["check-config", "--config", config.to_str().unwrap()]).await;
    assert_eq!(out.code, Some(2), "{out}");
    assert!(out.stderr.contains("listeners[0].tls_certificate"), "{out}");
}
