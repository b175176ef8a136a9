//! A Synapse homeserver for interoperability tests: installed with pip (`matrix-synapse`) in the
//! Python that `$TESSERA_SYNAPSE_PYTHON` names (default `python3`), started on loopback with its
//! own SQLite database, a client listener over plain HTTP and a federation listener over TLS
//! with a certificate of the test's CA. Federating on loopback needs a server name with an
//! explicit port (`127.0.0.1:<port>`, which needs no DNS), loopback allowed in its IP range
//! lists and no trusted key servers.

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::Duration,
};

use tempfile::TempDir;

use crate::{Client, federation::TestCa, server::free_port, wait_until};

/// How long Synapse may take to start (it compiles its config and database on first start).
const START_DEADLINE: Duration = Duration::from_secs(180);

/// The Python that runs Synapse.
pub fn python() -> String {
    std::env::var("TESSERA_SYNAPSE_PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

pub struct Synapse {
    pub server_name: String,
    pub client_port: u16,
    child: Option<Child>,
    dir: TempDir,
}

impl Synapse {
    /// Starts Synapse, trusting `ca` for federation and serving it with a certificate of `ca`
    /// for 127.0.0.1.
    pub async fn start(ca: &TestCa) -> Self {
        let python = python();
        let import = Command::new(&python)
            .args(["-c", "import synapse"])
            .output()
            .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
        assert!(
            import.status.success(),
            "Synapse is not importable by {python}: run `pip install matrix-synapse` (or point \
             TESSERA_SYNAPSE_PYTHON at a Python that has it)"
        );
        let dir = tempfile::Builder::new()
            .prefix("synapse-")
            .tempdir()
            .expect("a temporary directory");
        let federation_port = free_port();
        // Two picks in a row may name the same port.
        let client_port = std::iter::repeat_with(free_port)
            .find(|port| *port != federation_port)
            .expect("an endless supply of ports");
        let server_name = format!("127.0.0.1:{federation_port}");
        let config = dir.path().join("homeserver.yaml");
        let generated = Command::new(&python)
            .args([
                "-m",
                "synapse.app.homeserver",
                "--server-name",
                &server_name,
            ])
            .arg("--config-path")
            .arg(&config)
            .arg("--data-directory")
            .arg(dir.path())
            .args(["--generate-config", "--report-stats=no"])
            .current_dir(dir.path())
            .output()
            .expect("run Synapse's config generator");
        assert!(
            generated.status.success(),
            "Synapse could not generate its config: {}",
            String::from_utf8_lossy(&generated.stderr)
        );
        let (cert, key) = ca.certificate(&["127.0.0.1"]);
        let overrides = dir.path().join("tessera-test.yaml");
        std::fs::write(
            &overrides,
            test_config(
                client_port,
                federation_port,
                &cert,
                &key,
                &ca.path(),
                dir.path(),
            ),
        )
        .expect("write Synapse's test config");
        let log = std::fs::File::create(dir.path().join("stdout.log")).expect("a log file");
        let child = Command::new(&python)
            .args(["-m", "synapse.app.homeserver", "-c"])
            .arg(&config)
            .arg("-c")
            .arg(&overrides)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("a log file"))
            .stderr(log)
            .spawn()
            .expect("start Synapse");
        let mut synapse = Self {
            server_name,
            client_port,
            child: Some(child),
            dir,
        };
        synapse.wait_ready().await;
        synapse
    }

    pub fn client(&self) -> Client {
        Client::new(&format!("http://127.0.0.1:{}", self.client_port))
    }

    /// Waits until Synapse answers; its log is printed (by `drop`) if it never does.
    async fn wait_ready(&mut self) {
        let url = format!(
            "http://127.0.0.1:{}/_matrix/client/versions",
            self.client_port
        );
        let dir = self.dir.path();
        let child = self.child.as_mut().expect("Synapse was started");
        wait_until("Synapse to answer", START_DEADLINE, || {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "Synapse exited ({status}) while starting\n{}",
                    log_tail(dir)
                );
            }
            let url = url.clone();
            async move {
                reqwest::get(&url)
                    .await
                    .ok()
                    .filter(|response| response.status().is_success())
                    .map(drop)
            }
        })
        .await;
    }
}

/// The last lines of Synapse's output and log.
fn log_tail(dir: &Path) -> String {
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap_or_default();
    let log = format!("{}{}", read("stdout.log"), read("homeserver.log"));
    let tail: Vec<&str> = log.lines().rev().take(80).collect();
    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
}

impl Drop for Synapse {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "----- Synapse log -----\n{}\n----- end of Synapse log -----",
                log_tail(self.dir.path())
            );
        }
    }
}

/// What the test changes of Synapse's generated config (a later `-c` file wins key by key).
fn test_config(
    client_port: u16,
    federation_port: u16,
    cert: &Path,
    key: &Path,
    ca: &Path,
    dir: &Path,
) -> String {
    let unlimited = "{per_second: 1000000, burst_count: 1000000}";
    format!(
        r#"listeners:
  - port: {client_port}
    bind_addresses: ['127.0.0.1']
    type: http
    tls: false
    x_forwarded: false
    resources: [{{names: [client], compress: false}}]
  - port: {federation_port}
    bind_addresses: ['127.0.0.1']
    type: http
    tls: true
    resources: [{{names: [federation, media], compress: false}}]
tls_certificate_path: "{cert}"
tls_private_key_path: "{key}"
federation_custom_ca_list: ["{ca}"]
federation_verify_certificates: true
ip_range_blacklist: []
ip_range_whitelist: ['127.0.0.1']
federation_ip_range_blacklist: []
trusted_key_servers: []
suppress_key_server_warning: true
enable_registration: true
enable_registration_without_verification: true
report_stats: false
database:
  name: sqlite3
  args:
    database: "{db}"
rc_message: {unlimited}
rc_registration: {unlimited}
rc_login:
  address: {unlimited}
  account: {unlimited}
  failed_attempts: {unlimited}
rc_joins:
  local: {unlimited}
  remote: {unlimited}
rc_invites:
  per_room: {unlimited}
  per_user: {unlimited}
  per_issuer: {unlimited}
rc_federation:
  window_size: 1000
  sleep_limit: 1000
  sleep_delay: 0
  reject_limit: 1000
  concurrent: 100
"#,
        cert = cert.display(),
        key = key.display(),
        ca = ca.display(),
        db = dir.join("homeserver.db").display(),
    )
}

/// A Tessera server that federates with [`Synapse`]: named `127.0.0.1:<port>` (Synapse has no
/// resolve overrides, and an IP literal needs no DNS), its federation listener on that port
/// with a certificate of `ca`, trusting `ca`, and allowed to reach loopback.
pub async fn tessera_beside_synapse(ca: &TestCa) -> crate::TestServer {
    let port = free_port();
    let tls = ca.certificate(&["127.0.0.1"]);
    crate::TestServer::builder()
        .server_name(&format!("127.0.0.1:{port}"))
        .extra_listener(crate::federation::tls_federation_listener(port, &tls))
        .set(
            "federation.extra_ca_files",
            vec![ca.path().display().to_string()],
        )
        .set("federation.allow_private_addresses", true)
        .start()
        .await
}
