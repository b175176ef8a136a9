//! Several `tessera` servers federating over real TLS: a test CA, a certificate per server for
//! its server name (`hsN.tessera.test`), a TLS federation listener on a free port, and
//! `federation.resolve_overrides` pointing every server at the others' ports.

use std::path::PathBuf;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use tempfile::TempDir;
use toml::{Table, Value};

use crate::{
    Client, Method, Response,
    server::{ServerBuilder, TestServer, free_port},
};

/// Servers started together, each knowing where the others are.
pub struct Federation {
    pub servers: Vec<TestServer>,
    /// The federation (TLS) port of each server.
    pub tls_ports: Vec<u16>,
    ca: TestCa,
}

/// A certificate authority of the test's own, and the certificates it issued, in a temporary
/// directory that lives as long as it does.
pub struct TestCa {
    ca: CertifiedIssuer<'static, KeyPair>,
    directory: TempDir,
}

impl TestCa {
    pub fn new() -> Self {
        let directory = tempfile::Builder::new()
            .prefix("tessera-ca-")
            .tempdir()
            .expect("cannot create a temporary directory");
        let ca_key = KeyPair::generate().expect("generate the CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "Tessera test CA");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = CertifiedIssuer::self_signed(ca_params, ca_key).expect("self-sign the CA");
        std::fs::write(directory.path().join("ca.pem"), ca.pem()).expect("write the CA");
        Self { ca, directory }
    }

    /// The CA's PEM file.
    pub fn path(&self) -> PathBuf {
        self.directory.path().join("ca.pem")
    }

    pub fn pem(&self) -> String {
        self.ca.pem()
    }

    /// A certificate for `names` (DNS names or IP addresses): its PEM file and its key's.
    pub fn certificate(&self, names: &[&str]) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().expect("generate a server key");
        let names: Vec<String> = names.iter().map(|name| (*name).to_owned()).collect();
        let params = CertificateParams::new(names.clone()).expect("server parameters");
        let cert = params
            .signed_by(&key, &self.ca)
            .expect("sign a server certificate");
        let file = names[0].replace(':', "_");
        let cert_path = self.directory.path().join(format!("{file}.pem"));
        let key_path = self.directory.path().join(format!("{file}.key"));
        std::fs::write(&cert_path, cert.pem()).expect("write a certificate");
        std::fs::write(&key_path, key.serialize_pem()).expect("write a key");
        (cert_path, key_path)
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

/// A listener of the federation API over TLS on `port` with the certificate `tls`.
pub fn tls_federation_listener(port: u16, tls: &(PathBuf, PathBuf)) -> Table {
    let mut listener = Table::new();
    listener.insert("bind".into(), "127.0.0.1".into());
    listener.insert("port".into(), i64::from(port).into());
    listener.insert("apis".into(), vec!["federation"].into());
    listener.insert("tls_certificate".into(), tls.0.display().to_string().into());
    listener.insert("tls_private_key".into(), tls.1.display().to_string().into());
    listener
}

/// The server name of the `i`th server of a federation.
pub fn federated_server_name(i: usize) -> String {
    format!("hs{i}.tessera.test")
}

impl Federation {
    /// Registers `localpart` on server `i`.
    pub async fn register(&self, i: usize, localpart: &str, password: &str) -> crate::User {
        self.servers[i].client().register(localpart, password).await
    }

    /// Starts `count` servers with the harness defaults.
    pub async fn start(count: usize) -> Self {
        Self::start_with(count, |_, builder| builder).await
    }

    /// Starts `count` servers; `configure` adjusts each one's builder (by index).
    pub async fn start_with(
        count: usize,
        configure: impl Fn(usize, ServerBuilder) -> ServerBuilder,
    ) -> Self {
        Self::start_with_peers(count, &[], configure).await
    }

    /// [`Federation::start_with`], the servers also knowing where `peers` (server name, TLS
    /// port on loopback) are: stand-ins the test runs itself, with [`Federation::certificate`].
    pub async fn start_with_peers(
        count: usize,
        peers: &[(&str, u16)],
        configure: impl Fn(usize, ServerBuilder) -> ServerBuilder,
    ) -> Self {
        let ca = TestCa::new();
        // A port is free only until someone binds it: two picks in a row may name the same one.
        let mut tls_ports: Vec<u16> = Vec::with_capacity(count);
        while tls_ports.len() < count {
            let port = free_port();
            if !tls_ports.contains(&port) && peers.iter().all(|(_, taken)| *taken != port) {
                tls_ports.push(port);
            }
        }
        let mut overrides = Table::new();
        for (i, port) in tls_ports.iter().enumerate() {
            overrides.insert(
                federated_server_name(i),
                Value::from(format!("127.0.0.1:{port}")),
            );
        }
        for (name, port) in peers {
            overrides.insert((*name).to_owned(), Value::from(format!("127.0.0.1:{port}")));
        }
        let mut servers = Vec::new();
        for (i, port) in tls_ports.iter().enumerate() {
            let name = federated_server_name(i);
            let listener = tls_federation_listener(*port, &ca.certificate(&[&name]));
            let builder = TestServer::builder()
                .server_name(&name)
                .extra_listener(listener)
                .set("federation.resolve_overrides", overrides.clone())
                .set(
                    "federation.extra_ca_files",
                    vec![ca.path().display().to_string()],
                );
            servers.push(configure(i, builder).start().await);
        }
        Self {
            servers,
            tls_ports,
            ca,
        }
    }

    /// A certificate of the test CA for `names` (DNS names or IP addresses): its PEM file and
    /// its key's, which live as long as the federation.
    pub fn certificate(&self, names: &[&str]) -> (PathBuf, PathBuf) {
        self.ca.certificate(names)
    }

    /// An HTTPS client that trusts the test CA and reaches every server by its name.
    pub fn https_client(&self) -> reqwest::Client {
        let mut builder = reqwest::Client::builder().add_root_certificate(
            reqwest::Certificate::from_pem(self.ca.pem().as_bytes()).expect("the CA is PEM"),
        );
        for (i, port) in self.tls_ports.iter().enumerate() {
            builder = builder.resolve(
                &federated_server_name(i),
                std::net::SocketAddr::from(([127, 0, 0, 1], *port)),
            );
        }
        builder.build().expect("build the HTTPS client")
    }

    /// `https://<name of server i>:<its TLS port>`.
    pub fn federation_url(&self, i: usize) -> String {
        format!("https://{}:{}", federated_server_name(i), self.tls_ports[i])
    }

    /// `event` (a PDU without hashes and signatures, of a room of `version`) hashed and signed
    /// with server `from`'s own key, and its event ID: a PDU `from` could have built, for
    /// events no client action makes (ones the server itself would refuse to send).
    pub fn signed_pdu(
        &self,
        from: usize,
        version: &str,
        event: serde_json::Value,
    ) -> (String, serde_json::Value) {
        let key = tessera_core::keys::SigningKey::load_or_generate(
            &self.servers[from].signing_key_path(),
        )
        .expect("load the signing key");
        let rules = ruma::RoomVersionId::try_from(version)
            .ok()
            .and_then(|version| version.rules())
            .expect("a known room version");
        let mut object: ruma::CanonicalJsonObject =
            serde_json::from_value(event).expect("the event is a JSON object");
        let server_name =
            ruma::OwnedServerName::try_from(federated_server_name(from)).expect("a server name");
        let event_id =
            tessera_core::events::sign_and_identify(&mut object, &rules, &server_name, key.pair())
                .expect("sign the event");
        let json = serde_json::to_value(&object).expect("the signed event");
        (event_id.to_string(), json)
    }

    /// A redaction of `target` by `sender` (a user of server `from`) in a room of version 11,
    /// following `prev` (an event server `to` has) and authorized by the create event, the
    /// power levels and the sender's membership as `reader` sees them: built and signed with
    /// `from`'s key, as `from` could have sent it to `to`. Its event ID and PDU.
    pub async fn signed_redaction(
        &self,
        (from, to): (usize, usize),
        reader: &crate::User,
        room_id: &str,
        sender: &str,
        target: &str,
        prev: &str,
    ) -> (String, serde_json::Value) {
        let state = reader
            .client
            .get(&crate::rooms::room_path(room_id, "state"))
            .await
            .ok();
        let state_id = |kind: &str, key: &str| {
            state
                .as_array()
                .and_then(|events| {
                    events
                        .iter()
                        .find(|e| e["type"] == kind && e["state_key"] == key)
                })
                .map(|e| e["event_id"].clone())
                .unwrap_or_else(|| panic!("no {kind} {key:?} in {state}"))
        };
        let auth_events = serde_json::json!([
            state_id("m.room.create", ""),
            state_id("m.room.power_levels", ""),
            state_id("m.room.member", sender),
        ]);
        let served = self
            .signed_request(
                from,
                to,
                Method::GET,
                &format!("/_matrix/federation/v1/event/{}", crate::enc(prev)),
                None,
            )
            .await
            .ok();
        let depth = served["pdus"][0]["depth"].as_u64().expect("a depth") + 1;
        self.signed_pdu(
            from,
            "11",
            serde_json::json!({
                "room_id": room_id, "type": "m.room.redaction", "sender": sender,
                "content": { "redacts": target }, "origin_server_ts": 1_700_000_000_000u64,
                "depth": depth, "prev_events": [prev], "auth_events": auth_events,
            }),
        )
    }

    /// A request to server `to`'s federation API signed with server `from`'s own key (spec:
    /// "Request Authentication"): exactly what `from` would send, for requests no client
    /// action makes, such as malformed ones.
    pub async fn signed_request(
        &self,
        from: usize,
        to: usize,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Response {
        let key_file = std::fs::read_to_string(self.servers[from].signing_key_path())
            .expect("read the signing key");
        let [algorithm, version, seed] = key_file.split_whitespace().collect::<Vec<_>>()[..] else {
            panic!("unexpected signing key file: {key_file}");
        };
        let seed: [u8; 32] = vodozemac::base64_decode(seed)
            .expect("the seed is base64")
            .try_into()
            .expect("a 32-byte seed");
        let key = vodozemac::Ed25519SecretKey::from_slice(&seed);
        let (origin, destination) = (federated_server_name(from), federated_server_name(to));
        let mut signed = serde_json::json!({
            "method": method.as_str(),
            "uri": path,
            "origin": origin,
            "destination": destination,
        });
        if let Some(body) = &body {
            signed["content"] = body.clone();
        }
        // serde_json's maps are sorted: the compact form is the canonical JSON signed.
        let signature = key.sign(signed.to_string().as_bytes()).to_base64();
        let authorization = format!(
            "X-Matrix origin=\"{origin}\",destination=\"{destination}\",\
             key=\"{algorithm}:{version}\",sig=\"{signature}\""
        );
        let body = body.map(|b| (b.to_string().into_bytes(), "application/json"));
        Client::with_http(self.https_client(), &self.federation_url(to))
            .send(
                method,
                path,
                body,
                &[("Authorization".to_owned(), authorization)],
            )
            .await
    }
}
