//! `e2ee`: the requests a client makes to encrypt for a large room, each covering many devices
//! at once: `/keys/query` and `/keys/claim` for `--devices` devices, and `sendToDevice` to
//! `--fanout-devices` devices (one message per device, as when sharing a Megolm session, and one
//! `*` message per user), with the time until such a message shows in a recipient's `/sync`.

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use clap::Args;
use ed25519_dalek::{Signer as _, SigningKey};
use rand::Rng;
use serde_json::{Map, Value, json};
use tokio::task::JoinHandle;

use super::{Accounts, CommonArgs, RegisteredUser, register_all};
use crate::client::{CsClient, RequestError, Session, SyncQuery};
use crate::load::{run_setup, run_workers};
use crate::stats::{Latencies, ScenarioReport};

const OLM: &str = "m.olm.v1.curve25519-aes-sha2";
const MEGOLM: &str = "m.megolm.v1.aes-sha2";
const ONE_TIME_KEY_ALGORITHM: &str = "signed_curve25519";

/// The random bytes in each fake Olm message of the per-device fan-out (600 characters of
/// base64). A real room key share is about twice that; at this size 1,000 of them make a
/// request of about 0.8 MiB, under Tessera's default 1 MiB request body limit
/// (`limits.max_request_body_bytes`), so both servers take the same request.
const OLM_BODY_BYTES: usize = 450;

/// The content field naming a to-device message, so the recipient's sync can tell which one
/// arrived.
const TAG_FIELD: &str = "org.tessera.bench.tag";

/// The event type of the `*` fan-out: a message every device of a user gets alike, such as a
/// key or verification request (neither of which a server treats differently).
const BROADCAST_TYPE: &str = "org.tessera.bench.broadcast";

/// The recipient's sync: no presence, so that only the to-device messages wake it.
const WATCH_FILTER: &str = r#"{"presence":{"types":[]}}"#;

/// How long a sync waits for news, as clients typically ask.
const LONG_POLL: Duration = Duration::from_secs(30);

/// The pause before each timed `sendToDevice`, so that the recipient's long-poll, sent just
/// before, is parked in the server when the message comes (the server is idle then: the
/// previous message was answered and delivered).
const SETTLE: Duration = Duration::from_millis(250);

#[derive(Args)]
pub struct E2eeArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Devices whose keys one `/keys/query` and one `/keys/claim` ask for.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..))]
    pub devices: u32,
    /// Devices one `sendToDevice` reaches: the --devices ones and further ones, so at least
    /// --devices.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub fanout_devices: u32,
    /// Devices of each user: it registers, then logs in again for each further device. The
    /// last user of the --devices ones and of the further ones may have fewer.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..))]
    pub devices_per_user: u32,
    /// Timed requests of each kind, one at a time; each --devices device uploads as many
    /// one-time keys, so that every claim gets one.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    pub iterations: u32,
}

pub async fn run(args: &E2eeArgs) -> Result<ScenarioReport, String> {
    let (devices, fanout_devices) = (args.devices as usize, args.fanout_devices as usize);
    if fanout_devices < devices {
        return Err(format!(
            "--fanout-devices ({fanout_devices}) must be at least --devices ({devices}): the \
             fan-out reaches the queried devices and further ones"
        ));
    }
    let per_user = args.devices_per_user as usize;
    let layout = devices_per_owner(devices, fanout_devices, per_user);
    let key_owners = devices.div_ceil(per_user);
    let iterations = args.iterations as usize;
    let common = &args.common;
    let client = common.client(common.concurrency())?;
    let accounts = Accounts::generate();

    // The first user asks and sends; the others own the devices.
    let mut owners = register_all("e2ee", &client, common, &accounts, 1 + layout.len()).await?;
    let requester = owners.remove(0);
    let fleet = Fleet::log_in(
        &client, common, &accounts, &owners, &layout, key_owners, iterations,
    )
    .await?;
    let keyed = &fleet.owners[..key_owners];

    let mut operations = Vec::new();
    eprintln!("e2ee: {iterations} x keys/query for {devices} devices, one at a time");
    let keyed_users: Vec<&str> = keyed.iter().map(|devices| devices[0].user_id()).collect();
    let query = run_workers(
        &format!("keys/query devices={devices}"),
        1,
        iterations,
        |_, _| async {
            let found = client.query_keys(requester.token(), &keyed_users).await?;
            expect_count("devices with keys", found, devices)
        },
    )
    .await;
    operations.push(query);
    eprintln!("e2ee: {iterations} x keys/claim for {devices} devices, one at a time");
    let claims = claim_request(keyed);
    let claim = run_workers(
        &format!("keys/claim devices={devices}"),
        1,
        iterations,
        |_, _| async {
            let claimed = client.claim_keys(requester.token(), &claims).await?;
            expect_count("one-time keys", claimed, devices)
        },
    )
    .await;
    operations.push(claim);

    // The last device watches: every fan-out reaches it.
    let watched = fleet.owners.last().and_then(|devices| devices.last());
    let watched = watched.expect("--fanout-devices is at least 1");
    let mut watcher = Watcher::start(&client, common, &watched.session).await?;
    let sender_key = random_key();
    let per_device = |tag: &str| fleet.per_device_messages(&sender_key, tag);
    let broadcast = |tag: &str| fleet.broadcast_messages(tag);
    let request_bytes = json!({ "messages": per_device("size") }).to_string().len();
    eprintln!(
        "e2ee: {iterations} x sendToDevice of a message to each of {fanout_devices} devices of {} \
         users ({} KiB), then {iterations} x of a `*` message to each user, one at a time",
        fleet.owners.len(),
        request_bytes / 1024
    );
    // Untimed, so that the watcher's first incremental sync is not among the samples.
    let warm_up = FanOut {
        label: "warm-up".into(),
        event_type: "m.room.encrypted",
        messages: &per_device,
    };
    let (sends, arrivals) = warm_up.time(&client, &requester, &mut watcher, 1).await;
    if let Some(failure) = sends.failure_summary().or(arrivals.failure_summary()) {
        return Err(format!("the warm-up to-device message: {failure}"));
    }
    let fan_outs = [
        FanOut {
            label: format!("devices={fanout_devices}"),
            event_type: "m.room.encrypted",
            messages: &per_device,
        },
        FanOut {
            label: format!("* devices={fanout_devices}"),
            event_type: BROADCAST_TYPE,
            messages: &broadcast,
        },
    ];
    for fan_out in &fan_outs {
        let started = Instant::now();
        let (sends, arrivals) = fan_out
            .time(&client, &requester, &mut watcher, iterations)
            .await;
        let wall = started.elapsed();
        operations.push(sends.report(&format!("sendToDevice {}", fan_out.label), wall));
        operations.push(arrivals.report(&format!("to-device in sync {}", fan_out.label), wall));
    }

    Ok(ScenarioReport {
        scenario: "e2ee".into(),
        base_url: common.base_url.clone(),
        parameters: json!({
            "devices": args.devices,
            "fanout_devices": args.fanout_devices,
            "devices_per_user": args.devices_per_user,
            "users": layout.len(),
            "iterations": args.iterations,
            "fanout_request_bytes": request_bytes,
            "concurrency": common.concurrency,
            "registration": common.registration_kind(),
        }),
        operations,
    })
}

/// How many devices each device owner gets: `devices` over the first owners (the keys rows ask
/// for exactly theirs), the rest of `fanout_devices` over further owners, `per_user` each but
/// for the last of either group.
fn devices_per_owner(devices: usize, fanout_devices: usize, per_user: usize) -> Vec<usize> {
    let split = |total: usize| {
        (0..total.div_ceil(per_user)).map(move |i| per_user.min(total - i * per_user))
    };
    split(devices)
        .chain(split(fanout_devices - devices))
        .collect()
}

/// A logged-in device whose keys are uploaded.
struct Device {
    session: Session,
    /// Its Curve25519 identity key, which Olm messages to it are encrypted for.
    curve25519: String,
}

impl Device {
    fn user_id(&self) -> &str {
        &self.session.user_id
    }
}

/// Every device, by owner.
struct Fleet {
    owners: Vec<Vec<Device>>,
}

impl Fleet {
    /// Untimed setup: each owner's registration is its first device, and it logs in again for
    /// each further one (Synapse hashes with bcrypt, so a login costs it less than a
    /// registration); each device uploads its keys right after, those of the first
    /// `key_owners` owners with `one_time_keys` one-time keys.
    async fn log_in(
        client: &CsClient,
        common: &CommonArgs,
        accounts: &Accounts,
        owners: &[RegisteredUser],
        layout: &[usize],
        key_owners: usize,
        one_time_keys: usize,
    ) -> Result<Self, String> {
        let slots: Vec<(usize, usize)> = layout
            .iter()
            .enumerate()
            .flat_map(|(owner, &count)| (0..count).map(move |slot| (owner, slot)))
            .collect();
        eprintln!(
            "e2ee: {} devices of {} users logging in and uploading keys",
            slots.len(),
            owners.len()
        );
        let started = Instant::now();
        let devices = run_setup(
            "e2ee: devices ready",
            common.concurrency(),
            slots.len(),
            |i| {
                let (owner, slot) = slots[i];
                let user = &owners[owner];
                let keys = if owner < key_owners { one_time_keys } else { 0 };
                async move {
                    let device = async {
                        let session = match slot {
                            0 => user.session.clone(),
                            _ => client.login(&user.username, &accounts.password).await?,
                        };
                        upload_keys(client, session, keys).await
                    };
                    ("device", device.await.map(|device| (owner, device)))
                }
            },
        )
        .await?;
        eprintln!(
            "e2ee: {} devices ready in {:.1} s",
            slots.len(),
            started.elapsed().as_secs_f64()
        );
        let mut by_owner: Vec<Vec<Device>> = layout.iter().map(|_| Vec::new()).collect();
        for (owner, device) in devices {
            by_owner[owner].push(device);
        }
        Ok(Self { owners: by_owner })
    }

    /// A `sendToDevice` body's `messages` with an Olm-encrypted message for each device, as
    /// when sharing a room key: each device gets its own ciphertext.
    fn per_device_messages(&self, sender_key: &str, tag: &str) -> Value {
        let mut rng = rand::thread_rng();
        let mut body = vec![0u8; OLM_BODY_BYTES];
        self.by_user(|devices| {
            let contents = devices.iter().map(|device| {
                rng.fill(&mut body[..]);
                let content = json!({
                    "algorithm": OLM,
                    "sender_key": sender_key,
                    "ciphertext": {
                        device.curve25519.as_str(): { "type": 0, "body": STANDARD_NO_PAD.encode(&body) },
                    },
                    TAG_FIELD: tag,
                });
                (device.session.device_id.clone(), content)
            });
            Value::Object(contents.collect())
        })
    }

    /// A `sendToDevice` body's `messages` with one message for all devices of each user.
    fn broadcast_messages(&self, tag: &str) -> Value {
        self.by_user(|_| json!({ "*": { "action": "request", TAG_FIELD: tag } }))
    }

    fn by_user(&self, mut for_user: impl FnMut(&[Device]) -> Value) -> Value {
        let users = self
            .owners
            .iter()
            .map(|devices| (devices[0].user_id().to_owned(), for_user(devices)));
        Value::Object(users.collect())
    }
}

/// Makes the device's identity keys and `one_time_keys` signed one-time keys, as a client
/// does (Tessera checks the device keys' signature), and uploads them.
async fn upload_keys(
    client: &CsClient,
    session: Session,
    one_time_keys: usize,
) -> Result<Device, RequestError> {
    let (keys, curve25519) = new_keys(&session, one_time_keys);
    let counted = client.upload_keys(&session.access_token, &keys).await?;
    expect_count("unclaimed one-time keys", counted as usize, one_time_keys)?;
    Ok(Device {
        session,
        curve25519,
    })
}

/// The body of the device's first `/keys/upload`, and its Curve25519 identity key.
fn new_keys(session: &Session, one_time_keys: usize) -> (Value, String) {
    let signing_key = SigningKey::from_bytes(&rand::thread_rng().r#gen());
    let curve25519 = random_key();
    let device_id = session.device_id.as_str();
    let mut device_keys = json!({
        "user_id": session.user_id,
        "device_id": device_id,
        "algorithms": [OLM, MEGOLM],
        "keys": {
            format!("curve25519:{device_id}"): curve25519,
            format!("ed25519:{device_id}"): STANDARD_NO_PAD.encode(signing_key.verifying_key().to_bytes()),
        },
    });
    sign(&mut device_keys, session, &signing_key);
    let one_time_keys: Map<String, Value> = (1..=one_time_keys)
        .map(|i| {
            let mut key = json!({ "key": random_key() });
            sign(&mut key, session, &signing_key);
            // Key IDs as libolm makes them: a counter, base64-encoded.
            let counter = u32::try_from(i).unwrap_or(u32::MAX).to_be_bytes();
            let key_id = format!(
                "{ONE_TIME_KEY_ALGORITHM}:{}",
                STANDARD_NO_PAD.encode(counter)
            );
            (key_id, key)
        })
        .collect();
    let keys = json!({ "device_keys": device_keys, "one_time_keys": one_time_keys });
    (keys, curve25519)
}

/// Adds the device's Ed25519 signature of `object`, made over its canonical JSON.
fn sign(object: &mut Value, session: &Session, signing_key: &SigningKey) {
    // serde_json keeps object keys sorted (the workspace does not enable its `preserve_order`),
    // so the compact form of these ASCII-only, integer-only objects is their canonical JSON.
    let signature = signing_key.sign(object.to_string().as_bytes());
    object["signatures"] = json!({
        session.user_id.as_str(): {
            format!("ed25519:{}", session.device_id): STANDARD_NO_PAD.encode(signature.to_bytes()),
        },
    });
}

/// A random 32-byte key in unpadded base64, as Curve25519 keys are published.
fn random_key() -> String {
    STANDARD_NO_PAD.encode(rand::thread_rng().r#gen::<[u8; 32]>())
}

/// `/keys/claim`'s `one_time_keys`: one `signed_curve25519` key of each of the owners' devices.
fn claim_request(owners: &[Vec<Device>]) -> Value {
    let users = owners.iter().map(|devices| {
        let wanted = devices.iter().map(|device| {
            (
                device.session.device_id.clone(),
                json!(ONE_TIME_KEY_ALGORITHM),
            )
        });
        (
            devices[0].user_id().to_owned(),
            Value::Object(wanted.collect()),
        )
    });
    Value::Object(users.collect())
}

/// A fast answer with less in it than asked for must not count as a success.
fn expect_count(what: &str, found: usize, expected: usize) -> Result<(), RequestError> {
    if found == expected {
        Ok(())
    } else {
        Err(RequestError::Malformed(format!(
            "{found} {what} in the answer, not {expected}"
        )))
    }
}

/// One kind of `sendToDevice` fan-out: requests of `event_type` whose `messages` are built from
/// a tag that names each request.
struct FanOut<'a> {
    label: String,
    event_type: &'static str,
    messages: &'a dyn Fn(&str) -> Value,
}

impl FanOut<'_> {
    /// Sends `count` requests one at a time; returns the requests' latencies and the times from
    /// the start of each request until the watcher's sync returned its message.
    async fn time(
        &self,
        client: &CsClient,
        sender: &RegisteredUser,
        watcher: &mut Watcher,
        count: usize,
    ) -> (Latencies, Latencies) {
        let (mut sends, mut arrivals) = (Latencies::default(), Latencies::default());
        for i in 0..count {
            let tag = format!("{} {i}", self.label);
            let messages = (self.messages)(&tag);
            let arrival = watcher.watch(&tag);
            tokio::time::sleep(SETTLE).await;
            let started = Instant::now();
            let sent = client
                .send_to_device(sender.token(), self.event_type, &tag, &messages)
                .await;
            match sent {
                Ok(()) => {
                    sends.record_success(started.elapsed());
                    match watcher.arrival(arrival, started).await {
                        Ok(at) => arrivals.record_success(at - started),
                        Err(error) => arrivals.record_error(error),
                    }
                }
                Err(error) => {
                    // Nothing was sent, so nothing is to arrive.
                    arrival.abort();
                    sends.record_error(error.to_string());
                }
            }
        }
        (sends, arrivals)
    }
}

/// What a watching sync hands back: when the awaited message arrived, and the position after it.
type Arrival = JoinHandle<Result<(Instant, String), RequestError>>;

/// One device's sync, polled from where its last answer left off.
struct Watcher {
    client: CsClient,
    access_token: String,
    since: String,
    /// How long after its send started a message may take to show up.
    timeout: Duration,
}

impl Watcher {
    /// Untimed: the device's initial sync.
    async fn start(
        client: &CsClient,
        common: &CommonArgs,
        session: &Session,
    ) -> Result<Self, String> {
        let initial = client
            .sync(&session.access_token, &watch_query(None))
            .await
            .map_err(|e| format!("the watching device's initial sync: {e}"))?;
        Ok(Self {
            client: client.clone(),
            access_token: session.access_token.clone(),
            since: initial.next_batch,
            timeout: Duration::from_secs(common.timeout_secs),
        })
    }

    /// Starts long-polling until the to-device message tagged `tag` comes.
    fn watch(&self, tag: &str) -> Arrival {
        let (client, access_token) = (self.client.clone(), self.access_token.clone());
        let (mut since, tag) = (self.since.clone(), tag.to_owned());
        tokio::spawn(async move {
            loop {
                let batch = client
                    .sync(&access_token, &watch_query(Some(&since)))
                    .await?;
                let at = Instant::now();
                since = batch.next_batch;
                if batch
                    .to_device_contents
                    .iter()
                    .any(|content| content[TAG_FIELD] == *tag)
                {
                    return Ok((at, since));
                }
            }
        })
    }

    /// When the message `watch` waits for arrived, unless that took longer than the timeout
    /// after `sent` or a poll failed.
    async fn arrival(&mut self, mut arrival: Arrival, sent: Instant) -> Result<Instant, String> {
        let deadline = tokio::time::Instant::from_std(sent + self.timeout);
        match tokio::time::timeout_at(deadline, &mut arrival).await {
            Ok(Ok(Ok((at, since)))) => {
                self.since = since;
                Ok(at)
            }
            Ok(Ok(Err(error))) => Err(format!("the recipient's sync failed: {error}")),
            Ok(Err(join_error)) => Err(format!("the recipient's sync loop ended: {join_error}")),
            Err(_) => {
                arrival.abort();
                Err(format!(
                    "not in the recipient's sync {} s after the send started",
                    self.timeout.as_secs()
                ))
            }
        }
    }
}

fn watch_query(since: Option<&str>) -> SyncQuery<'_> {
    SyncQuery {
        since,
        timeout: since.map(|_| LONG_POLL),
        filter: Some(WATCH_FILTER),
        set_presence: Some("offline"),
    }
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::{Signature, Verifier as _, VerifyingKey};

    use super::*;

    #[test]
    fn devices_are_split_per_user_with_the_queried_ones_first() {
        assert_eq!(devices_per_owner(500, 1000, 50), vec![50; 20]);
        assert_eq!(devices_per_owner(120, 130, 50), [50, 50, 20, 10]);
        assert_eq!(devices_per_owner(3, 3, 50), [3]);
    }

    #[test]
    fn uploaded_keys_carry_a_valid_self_signature() {
        let session = Session {
            user_id: "@alice:localhost".into(),
            device_id: "DEVICE".into(),
            access_token: "token".into(),
        };
        let (keys, curve25519) = new_keys(&session, 2);
        let mut device_keys = keys["device_keys"].clone();
        assert_eq!(
            device_keys["keys"]["curve25519:DEVICE"],
            curve25519.as_str()
        );
        let decode = |value: &Value| STANDARD_NO_PAD.decode(value.as_str().unwrap()).unwrap();
        let public_key = decode(&device_keys["keys"]["ed25519:DEVICE"]);
        let public_key = VerifyingKey::from_bytes(&public_key.try_into().unwrap()).unwrap();
        let verify = |object: &mut Value| {
            let signature = object
                .as_object_mut()
                .unwrap()
                .remove("signatures")
                .unwrap();
            let signature = decode(&signature["@alice:localhost"]["ed25519:DEVICE"]);
            let signature = Signature::from_slice(&signature).unwrap();
            // Canonical JSON: keys sorted, no whitespace.
            let canonical = object.to_string();
            assert!(!canonical.contains(' '));
            public_key.verify(canonical.as_bytes(), &signature)
        };
        assert!(verify(&mut device_keys).is_ok());
        let one_time_keys = keys["one_time_keys"].as_object().unwrap();
        let ids: Vec<&str> = one_time_keys.keys().map(String::as_str).collect();
        assert_eq!(
            ids,
            ["signed_curve25519:AAAAAQ", "signed_curve25519:AAAAAg"]
        );
        for key in one_time_keys.values() {
            assert!(verify(&mut key.clone()).is_ok());
        }
        assert_eq!(
            json!({ "b": 1, "a": { "d": 2, "c": 3 } }).to_string(),
            r#"{"a":{"c":3,"d":2},"b":1}"#
        );
    }
}
