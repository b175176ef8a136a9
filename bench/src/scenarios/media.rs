//! `media`: upload and download throughput of --file-mib files with --concurrency clients,
//! thumbnail latency (first request of each spec size, then cached ones), and the server's peak
//! memory while one client downloads a --large-mib file.

use std::io::Cursor;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Args;
use rand::RngCore;
use serde_json::json;

use super::{Accounts, CommonArgs, register_all};
use crate::client::{CsClient, RequestError};
use crate::load::{run_phase, run_setup};
use crate::process::rss_kib;
use crate::stats::{Latencies, ScenarioReport};

const MIB: usize = 1024 * 1024;
/// The spec's default thumbnail sizes.
const THUMBNAIL_SIZES: [(u32, u32, &str); 5] = [
    (32, 32, "crop"),
    (96, 96, "crop"),
    (320, 240, "scale"),
    (640, 480, "scale"),
    (800, 600, "scale"),
];
/// How often the server's resident memory is sampled during the large download.
const RSS_SAMPLE_INTERVAL: Duration = Duration::from_millis(20);

#[derive(Args)]
pub struct MediaArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Size of each file of the throughput phases, in MiB.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub file_mib: u32,
    /// Files uploaded (and then downloaded) in the throughput phases.
    #[arg(long, default_value_t = 40, value_parser = clap::value_parser!(u32).range(1..))]
    pub files: u32,
    /// Cached thumbnail requests, cycling through the spec's sizes.
    #[arg(long, default_value_t = 500)]
    pub thumbnails: u32,
    /// Size of the file whose download is watched for memory, in MiB (0: skip that phase).
    #[arg(long, default_value_t = 1024)]
    pub large_mib: u32,
    /// PID of the server, to sample its resident memory (Linux /proc) during the large download.
    #[arg(long)]
    pub server_pid: Option<u32>,
}

pub async fn run(args: &MediaArgs) -> Result<ScenarioReport, String> {
    let concurrency = args.common.concurrency();
    let client = args.common.client(concurrency)?;
    let accounts = Accounts::generate();
    let users = register_all("media", &client, &args.common, &accounts, concurrency).await?;
    let token = |i: usize| users[i % users.len()].token();

    let mut file = vec![0u8; args.file_mib as usize * MIB];
    rand::thread_rng().fill_bytes(&mut file);
    let file = Bytes::from(file);
    let file_len = file.len() as u64;
    let upload_name: &'static str = leak(format!("upload {} MiB", args.file_mib));
    let download_name: &'static str = leak(format!("download {} MiB", args.file_mib));

    eprintln!(
        "media: {} uploads of {} MiB at concurrency {concurrency}",
        args.files, args.file_mib
    );
    let uploads = run_phase(concurrency, args.files as usize, |i| {
        let (client, body) = (&client, file.clone());
        async move {
            (
                upload_name,
                client
                    .upload(token(i), body.into(), file_len, "application/octet-stream")
                    .await,
            )
        }
    })
    .await;
    let uris = uploads.outputs.clone();
    if uris.is_empty() {
        return Err(format!(
            "no upload succeeded: {:?}",
            uploads.check_complete()
        ));
    }
    let mut operations = uploads.reports();

    eprintln!("media: {} downloads of {} MiB", args.files, args.file_mib);
    let downloads = run_phase(concurrency, args.files as usize, |i| {
        let (client, uri, file) = (&client, &uris[i % uris.len()], &file);
        async move {
            let outcome = client
                .media_get(token(i), "download", uri, "", 64)
                .await
                .and_then(|(length, head)| {
                    if length == file_len && head == file[..head.len()] {
                        Ok(())
                    } else {
                        Err(RequestError::Malformed(format!(
                            "got {length} bytes, expected {file_len}"
                        )))
                    }
                });
            (download_name, outcome)
        }
    })
    .await;
    operations.extend(downloads.reports());

    eprintln!("media: thumbnails");
    let picture = test_picture()?;
    let picture_len = picture.len() as u64;
    let picture = client
        .upload(token(0), picture.into(), picture_len, "image/png")
        .await
        .map_err(|e| format!("cannot upload the thumbnail source: {e}"))?;
    let thumbnail_query = |i: usize| {
        let (width, height, method) = THUMBNAIL_SIZES[i % THUMBNAIL_SIZES.len()];
        format!("?width={width}&height={height}&method={method}")
    };
    let mut first = Latencies::default();
    let started = Instant::now();
    for i in 0..THUMBNAIL_SIZES.len() {
        first
            .time(thumbnail(&client, token(0), &picture, &thumbnail_query(i)))
            .await;
    }
    operations.push(first.report("thumbnail, first of each size", started.elapsed()));
    let cached = run_phase(concurrency, args.thumbnails as usize, |i| {
        let (client, picture, query) = (&client, &picture, thumbnail_query(i));
        async move {
            (
                "thumbnail, cached",
                thumbnail(client, token(i), picture, &query).await,
            )
        }
    })
    .await;
    operations.extend(cached.reports());

    let mut memory = json!(null);
    if args.large_mib > 0 {
        let large_len = args.large_mib as u64 * MIB as u64;
        eprintln!("media: uploading {} MiB (untimed)", args.large_mib);
        let chunk = file.slice(..MIB);
        let large = run_setup("media: large upload", 1, 1, |_| {
            let (client, chunk) = (&client, chunk.clone());
            async move {
                // Whole chunks: --large-mib is a multiple of the 1 MiB chunk.
                let chunks = (0..large_len / chunk.len() as u64)
                    .map(move |_| Ok::<_, std::io::Error>(chunk.clone()));
                let body = reqwest::Body::wrap_stream(futures::stream::iter(chunks));
                (
                    "upload large",
                    client
                        .upload(token(0), body, large_len, "application/octet-stream")
                        .await,
                )
            }
        })
        .await?;
        let uri = &large[0];
        let large_name: &'static str = leak(format!("download {} MiB", args.large_mib));
        eprintln!("media: downloading {} MiB", args.large_mib);
        let sampler = args.server_pid.map(RssSampler::start);
        let baseline = sampler.as_ref().map(RssSampler::peak_kib);
        let mut latencies = Latencies::default();
        let started = Instant::now();
        latencies
            .time(async {
                let (length, _) = client.media_get(token(0), "download", uri, "", 0).await?;
                if length == large_len {
                    Ok(())
                } else {
                    Err(RequestError::Malformed(format!(
                        "got {length} bytes, expected {large_len}"
                    )))
                }
            })
            .await;
        operations.push(latencies.report(large_name, started.elapsed()));
        if let Some(sampler) = sampler {
            memory = json!({
                "before_mib": baseline.unwrap_or_default() / 1024,
                "peak_during_download_mib": sampler.stop().await / 1024,
            });
        }
    }

    Ok(ScenarioReport {
        scenario: "media".into(),
        base_url: args.common.base_url.clone(),
        parameters: json!({
            "file_mib": args.file_mib,
            "files": args.files,
            "concurrency": args.common.concurrency,
            "thumbnails": args.thumbnails,
            "large_mib": args.large_mib,
            // Measured, not chosen: MiB/s of each phase is req/s x file_mib.
            "server_rss": memory,
        }),
        operations,
    })
}

async fn thumbnail(
    client: &CsClient,
    token: &str,
    picture: &str,
    query: &str,
) -> Result<(), RequestError> {
    let (_, head) = client
        .media_get(token, "thumbnail", picture, query, 8)
        .await?;
    // PNG or JPEG magic: a thumbnail, not an error page.
    if head.starts_with(b"\x89PNG") || head.starts_with(b"\xff\xd8") {
        Ok(())
    } else {
        Err(RequestError::Malformed(
            "the thumbnail is not an image".into(),
        ))
    }
}

/// A 2000x1500 photo-like PNG (gradients and noise, so it does not compress to nothing).
fn test_picture() -> Result<Vec<u8>, String> {
    let mut rng = rand::thread_rng();
    let image = image::RgbImage::from_fn(2000, 1500, |x, y| {
        let noise = (rng.next_u32() % 32) as u8;
        image::Rgb([
            (x % 256) as u8 ^ noise,
            (y % 256) as u8,
            ((x + y) % 256) as u8,
        ])
    });
    let mut bytes = Vec::new();
    image
        .write_to(&mut Cursor::new(&mut bytes), image::ImageFormat::Png)
        .map_err(|e| format!("cannot encode the test picture: {e}"))?;
    Ok(bytes)
}

/// Operation names are `&'static str`; the scenario makes a handful per run.
fn leak(name: String) -> &'static str {
    Box::leak(name.into_boxed_str())
}

/// Samples a process's resident memory (`VmRSS`) in the background and keeps the peak.
struct RssSampler {
    peak_kib: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl RssSampler {
    fn start(pid: u32) -> Self {
        let peak_kib = Arc::new(AtomicU64::new(rss_kib(pid).unwrap_or_default()));
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn({
            let (peak_kib, stop) = (peak_kib.clone(), stop.clone());
            async move {
                while !stop.load(Ordering::Relaxed) {
                    if let Some(kib) = rss_kib(pid) {
                        peak_kib.fetch_max(kib, Ordering::Relaxed);
                    }
                    tokio::time::sleep(RSS_SAMPLE_INTERVAL).await;
                }
            }
        });
        Self {
            peak_kib,
            stop,
            task,
        }
    }

    fn peak_kib(&self) -> u64 {
        self.peak_kib.load(Ordering::Relaxed)
    }

    async fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        // A sampler that panicked leaves the peak it had reached.
        let _ = self.task.await;
        self.peak_kib.load(Ordering::Relaxed)
    }
}
