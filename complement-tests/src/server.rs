//! Starting, stopping and tearing down `tessera` processes.

use std::fmt;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;
use toml::{Table, Value};

use crate::client::Client;
use crate::postgres::TestDatabase;
use crate::util::random_string;

/// How long a server may take to answer `/versions` after being spawned.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How often a start is retried when the chosen port was taken in the meantime.
const START_ATTEMPTS: usize = 3;
/// How long a CLI invocation may run.
const CLI_TIMEOUT: Duration = Duration::from_secs(60);
/// How much of the server log is printed when a test fails.
const LOG_TAIL_BYTES: usize = 64 * 1024;

/// The `tessera` binary under test: `$TESSERA_BIN`, else `tessera` in the cargo target
/// directory the test executable was built in (`<target>/debug/deps/<test>` -> `<target>/debug/tessera`).
pub fn tessera_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("TESSERA_BIN") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "TESSERA_BIN={} does not exist or is not a file (unset it to use the binary that \
             `cargo build --bin tessera` builds)",
            path.display()
        );
        return path;
    }
    let exe = std::env::current_exe().expect("cannot determine the test executable's path");
    let path = exe
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join(format!("tessera{}", std::env::consts::EXE_SUFFIX)))
        .unwrap_or_else(|| panic!("unexpected test executable location {}", exe.display()));
    assert!(
        path.is_file(),
        "the tessera binary was not found at {}: run `cargo build --bin tessera` first \
         (with the same CARGO_TARGET_DIR), or point TESSERA_BIN at it",
        path.display()
    );
    path
}

/// What a `tessera` CLI invocation did.
pub struct CliOutput {
    /// The command line, for messages.
    pub command: String,
    /// Exit code (`None` when killed by a signal).
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl fmt::Display for CliOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` exited with {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.command, self.code, self.stdout, self.stderr
        )
    }
}

impl CliOutput {
    /// Asserts exit code 0 and returns stdout.
    #[track_caller]
    pub fn success(&self) -> &str {
        assert_eq!(self.code, Some(0), "expected success: {self}");
        &self.stdout
    }
}

/// Runs `tessera <args>` and waits for it (with a deadline).
pub async fn run_tessera(args: &[&str]) -> CliOutput {
    let bin = tessera_bin();
    let command = format!("{} {}", bin.display(), args.join(" "));
    let child = tokio::process::Command::new(&bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run `{command}`: {e}"));
    let output = tokio::time::timeout(CLI_TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("`{command}` did not finish within {CLI_TIMEOUT:?}"))
        .unwrap_or_else(|e| panic!("waiting for `{command}` failed: {e}"));
    CliOutput {
        command,
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Configures a [`TestServer`] before it starts. Start from [`TestServer::builder`].
#[must_use]
pub struct ServerBuilder {
    server_name: Option<String>,
    overrides: Vec<(String, Value)>,
    env: Vec<(String, String)>,
    extra_listeners: Vec<Table>,
}

impl ServerBuilder {
    /// The server name (default `localhost:<port>`).
    pub fn server_name(mut self, name: &str) -> Self {
        self.server_name = Some(name.to_owned());
        self
    }

    /// Sets any config key by its dotted path, e.g. `set("limits.max_page_size", 10)`.
    pub fn set(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.overrides.push((key.to_owned(), value.into()));
        self
    }

    /// Adds a `[[listeners]]` table after the harness's own (which readiness checks use).
    pub fn extra_listener(mut self, listener: Table) -> Self {
        self.extra_listeners.push(listener);
        self
    }

    /// An environment variable for the server process (e.g. for `{ env = "VAR" }` secrets).
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// `registration.mode`: "disabled", "open" (the harness default) or "token".
    pub fn registration_mode(self, mode: &str) -> Self {
        self.set("registration.mode", mode)
    }

    /// Token-gated registration with these tokens.
    pub fn registration_tokens(self, tokens: &[&str]) -> Self {
        let tokens: Vec<Value> = tokens.iter().map(|t| Value::from(*t)).collect();
        self.registration_mode("token")
            .set("registration.tokens", tokens)
    }

    /// `registration.shared_secret` (the harness default is a random one).
    pub fn shared_secret(self, secret: &str) -> Self {
        self.set("registration.shared_secret", secret)
    }

    /// Enables rate limiting and sets one bucket, e.g. `rate_limit("login", 0.1, 3)`.
    pub fn rate_limit(self, bucket: &str, per_second: f64, burst: i64) -> Self {
        let mut limit = Table::new();
        limit.insert("per_second".into(), per_second.into());
        limit.insert("burst".into(), burst.into());
        self.set("rate_limits.enabled", true)
            .set(&format!("rate_limits.{bucket}"), limit)
    }

    /// `limits.max_request_body_bytes`.
    pub fn max_request_body_bytes(self, bytes: i64) -> Self {
        self.set("limits.max_request_body_bytes", bytes)
    }

    /// `auth.access_token_lifetime_ms` (for tokens issued with a refresh token).
    pub fn access_token_lifetime_ms(self, ms: i64) -> Self {
        self.set("auth.access_token_lifetime_ms", ms)
    }

    /// Creates the directory, config file and database, without starting the process.
    pub async fn prepare(self) -> TestServer {
        let dir = tempfile::Builder::new()
            .prefix("tessera-test-")
            .tempdir()
            .expect("cannot create a temporary directory");
        let database = match std::env::var("TESSERA_TEST_DATABASE_URL") {
            Ok(url) if !url.is_empty() => Some(TestDatabase::create(&url).await),
            _ => None,
        };
        let port = free_port();
        let server_name = self
            .server_name
            .unwrap_or_else(|| format!("localhost:{port}"));
        let shared_secret = random_string(32);
        let mut config = base_config(
            &dir,
            &server_name,
            port,
            database.as_ref().map_or("", |db| &db.url),
            &shared_secret,
        );
        for (key, value) in self.overrides {
            set_key(&mut config, &key, value);
        }
        if let Some(Value::Array(listeners)) = config.get_mut("listeners") {
            listeners.extend(self.extra_listeners.into_iter().map(Value::Table));
        }
        let shared_secret = config
            .get("registration")
            .and_then(|r| r.get("shared_secret"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let server = TestServer {
            child: None,
            database,
            config_path: dir.path().join("tessera.toml"),
            log_path: dir.path().join("tessera.log"),
            config,
            env: self.env,
            port,
            server_name,
            shared_secret,
            dir,
        };
        server.write_config();
        server
    }

    /// Prepares and starts the server; returns once `/versions` answers 200.
    pub async fn start(self) -> TestServer {
        let mut server = self.prepare().await;
        server.run().await;
        server
    }
}

/// One `tessera` process with its own directory, config, database and port. Killed on drop, also
/// when the test panics; its log is printed when the test fails.
pub struct TestServer {
    child: Option<Child>,
    database: Option<TestDatabase>,
    config: Table,
    env: Vec<(String, String)>,
    config_path: PathBuf,
    log_path: PathBuf,
    port: u16,
    server_name: String,
    shared_secret: String,
    dir: TempDir,
}

impl TestServer {
    /// A server with the harness defaults: open registration, rate limits off, SQLite (or a fresh
    /// PostgreSQL database, see the crate docs).
    pub async fn start() -> Self {
        Self::builder().start().await
    }

    pub fn builder() -> ServerBuilder {
        ServerBuilder {
            server_name: None,
            overrides: Vec::new(),
            env: Vec::new(),
            extra_listeners: Vec::new(),
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `localhost:<port of the first start>`.
    pub fn server_name(&self) -> &str {
        &self.server_name
    }

    /// `@<localpart>:<server_name>`.
    pub fn user_id(&self, localpart: &str) -> String {
        format!("@{localpart}:{}", self.server_name)
    }

    /// The configured `registration.shared_secret` when given inline (else empty).
    pub fn shared_secret(&self) -> &str {
        &self.shared_secret
    }

    /// The server's signing key file (Synapse's format: `ed25519 <version> <seed>`).
    pub fn signing_key_path(&self) -> PathBuf {
        self.dir.path().join("data").join("signing.key")
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// A fresh client without an access token.
    pub fn client(&self) -> Client {
        Client::new(&self.base_url())
    }

    /// Starts the process and waits until `/versions` answers 200. Retries on another port when
    /// the chosen one was taken meanwhile; the server name stays the same.
    pub async fn run(&mut self) {
        assert!(self.child.is_none(), "the server is already running");
        for attempt in 1..=START_ATTEMPTS {
            if attempt > 1 {
                self.port = free_port();
                self.config["listeners"][0]["port"] = i64::from(self.port).into();
                self.write_config();
            }
            self.spawn();
            match self.wait_ready().await {
                Ok(()) => return,
                Err(StartFailure::Exited(status))
                    if attempt < START_ATTEMPTS && self.log().to_lowercase().contains("in use") =>
                {
                    eprintln!(
                        "tessera could not bind port {} ({status}); retrying",
                        self.port
                    );
                    self.child = None;
                }
                Err(failure) => {
                    self.kill();
                    panic!(
                        "tessera failed to start: {failure}\nconfig {}:\n{}\n{}",
                        self.config_path.display(),
                        toml::to_string(&self.config).unwrap_or_default(),
                        self.log_tail()
                    );
                }
            }
        }
    }

    /// Kills the process and waits for it. Panics if it had already died on its own.
    pub fn stop(&mut self) {
        let Some(child) = self.child.as_mut() else {
            return;
        };
        let early_exit = child.try_wait().ok().flatten();
        self.kill();
        if let Some(status) = early_exit
            && !std::thread::panicking()
        {
            panic!(
                "tessera exited unexpectedly during the test ({status})\n{}",
                self.log_tail()
            );
        }
    }

    /// Runs `tessera <args> --config <this server's config>`.
    pub async fn cli(&self, args: &[&str]) -> CliOutput {
        let config = self.config_path.to_string_lossy().into_owned();
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--config", &config]);
        run_tessera(&all).await
    }

    /// Everything the process wrote to stdout and stderr so far (all starts).
    pub fn log(&self) -> String {
        std::fs::read(&self.log_path)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    }

    fn log_tail(&self) -> String {
        let log = self.log();
        let mut start = log.len().saturating_sub(LOG_TAIL_BYTES);
        while !log.is_char_boundary(start) {
            start += 1;
        }
        format!(
            "----- tessera log ({}, {} of {} bytes) -----\n{}\n----- end of tessera log -----",
            self.log_path.display(),
            log.len() - start,
            log.len(),
            &log[start..]
        )
    }

    fn write_config(&self) {
        let text = toml::to_string(&self.config).expect("config serialises");
        std::fs::write(&self.config_path, text)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", self.config_path.display()));
    }

    fn spawn(&mut self) {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", self.log_path.display()));
        let stderr = log
            .try_clone()
            .expect("cannot duplicate the log file handle");
        let child = Command::new(tessera_bin())
            .arg("serve")
            .arg("--config")
            .arg(&self.config_path)
            .current_dir(self.dir.path())
            .env("RUST_BACKTRACE", "1")
            .env("NO_COLOR", "1")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn tessera: {e}"));
        self.child = Some(child);
    }

    async fn wait_ready(&mut self) -> Result<(), StartFailure> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .expect("reqwest client");
        let url = format!("{}/_matrix/client/versions", self.base_url());
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let child = self.child.as_mut().expect("spawned");
            if let Some(status) = child.try_wait().ok().flatten() {
                return Err(StartFailure::Exited(status.to_string()));
            }
            let last = match http.get(&url).send().await {
                Ok(resp) if resp.status() == 200 => match self.closed_extra_listener().await {
                    None => return Ok(()),
                    Some(port) => format!("the listener on port {port} does not accept yet"),
                },
                Ok(resp) => format!("GET {url} answered {}", resp.status()),
                Err(e) => format!("GET {url}: {e}"),
            };
            if Instant::now() > deadline {
                return Err(StartFailure::NotReady(last));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The port of an extra listener that does not accept connections yet: listeners start
    /// one after another, so the first answering does not mean the others are up.
    async fn closed_extra_listener(&self) -> Option<u16> {
        let listeners = self.config.get("listeners")?.as_array()?;
        for listener in listeners.iter().skip(1) {
            let port = listener.get("port")?.as_integer()?;
            let port = u16::try_from(port).ok()?;
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_err()
            {
                return Some(port);
            }
        }
        None
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Either may fail only because the process is already gone.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let panicking = std::thread::panicking();
        self.stop();
        if panicking {
            eprintln!("{}", self.log_tail());
        }
        // The database goes after the process that uses it.
        self.database.take();
    }
}

enum StartFailure {
    Exited(String),
    NotReady(String),
}

impl fmt::Display for StartFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartFailure::Exited(status) => write!(f, "the process exited ({status})"),
            StartFailure::NotReady(last) => {
                write!(f, "not ready within {START_TIMEOUT:?}; last probe: {last}")
            }
        }
    }
}

/// A port that was free a moment ago (bind to port 0, read it, release it).
/// A loopback port free now, below the ephemeral range (32768 and up on Linux) that outgoing
/// connections draw from: a port the system hands out for binding port 0 may be taken by a
/// client socket of a busy test before the server binds it. Ports are tried in a spread-out
/// order (a stride coprime to the range's size visits every port once), from a start that
/// differs per test process.
pub(crate) fn free_port() -> u16 {
    const FIRST: u32 = 20_000;
    const COUNT: u32 = 12_000;
    const STRIDE: u32 = 7_919;
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    static START: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    let start = *START.get_or_init(rand::random::<u32>);
    for _ in 0..COUNT {
        let step = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let offset = start.wrapping_add(step.wrapping_mul(STRIDE)) % COUNT;
        let port = u16::try_from(FIRST + offset).expect("ports below 32,000");
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!(
        "no free loopback port between {FIRST} and {}",
        FIRST + COUNT
    )
}

fn base_config(
    dir: &TempDir,
    server_name: &str,
    port: u16,
    database_url: &str,
    shared_secret: &str,
) -> Table {
    let data_dir = dir.path().join("data");
    let level = std::env::var("TESSERA_TEST_LOG_LEVEL").unwrap_or_else(|_| "info".into());
    let quote = |s: &str| Value::from(s).to_string();
    let text = format!(
        r#"
server_name = {server_name}
data_dir = {data_dir}

[[listeners]]
bind = "127.0.0.1"
port = {port}
apis = ["client", "federation", "metrics"]

[database]
url = {database_url}

[registration]
mode = "open"
shared_secret = {shared_secret}

[rate_limits]
enabled = false

[logging]
level = {level}
"#,
        server_name = quote(server_name),
        data_dir = quote(&data_dir.to_string_lossy()),
        database_url = quote(database_url),
        shared_secret = quote(shared_secret),
        level = quote(&level),
    );
    text.parse().expect("the base config is valid TOML")
}

/// Sets `key` (dotted, e.g. `rate_limits.login`) in `config`, creating tables on the way.
fn set_key(config: &mut Table, key: &str, value: Value) {
    let mut parts: Vec<&str> = key.split('.').collect();
    let last = parts.pop().expect("split yields at least one part");
    let mut current = config;
    for part in parts {
        current = current
            .entry(part)
            .or_insert_with(|| Value::Table(Table::new()))
            .as_table_mut()
            .unwrap_or_else(|| panic!("config key {key}: {part} is not a table"));
    }
    current.insert(last.to_owned(), value);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_key_creates_nested_tables() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = base_config(&dir, "localhost:1", 1, "", "s");
        set_key(&mut config, "limits.max_request_body_bytes", 10.into());
        set_key(&mut config, "registration.mode", "token".into());
        assert_eq!(
            config["limits"]["max_request_body_bytes"].as_integer(),
            Some(10)
        );
        assert_eq!(config["registration"]["mode"].as_str(), Some("token"));
        assert_eq!(config["registration"]["shared_secret"].as_str(), Some("s"));
    }
}
