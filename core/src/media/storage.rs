//! Where media bytes live: a directory (default) or an S3-compatible bucket, both behind
//! `object_store`. Writes stream in bounded chunks and become visible only when complete (the
//! filesystem store writes a staging file and renames it; S3 completes a multipart upload), so a
//! crash never leaves a half file under a media ID.

use std::sync::Arc;

use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt, stream::BoxStream};
use object_store::{
    GetResultPayload, ObjectStore, aws::AmazonS3Builder, buffered::BufWriter,
    local::LocalFileSystem, path::Path,
};
use tokio::io::AsyncWriteExt;

use crate::{
    Config,
    config::{MediaStorage, S3Config},
};

use super::MediaError;

/// S3 refuses multipart parts under 5 MiB (except the last).
const S3_PART_BYTES: usize = 5 * 1024 * 1024;
/// Local writes flush to the staging file in chunks of this size.
const LOCAL_CHUNK_BYTES: usize = 1024 * 1024;
/// Parts of one upload written at once: each is a buffer of `part_bytes`, so this bounds the
/// memory an upload holds (object_store's default, 8, let eight 10 MiB uploads pin 200 MiB).
const PARTS_IN_FLIGHT: usize = 2;
/// Read size when streaming a local file to a client.
const READ_CHUNK_BYTES: usize = 256 * 1024;

pub type ByteStream = BoxStream<'static, Result<Bytes, MediaError>>;

#[derive(Clone)]
pub struct Storage {
    store: Arc<dyn ObjectStore>,
    part_bytes: usize,
}

impl Storage {
    pub fn open(config: &Config) -> Result<Self, MediaError> {
        match config.media.storage {
            MediaStorage::Filesystem => {
                let dir = config.media_path();
                std::fs::create_dir_all(&dir).map_err(|e| {
                    MediaError::Internal(format!(
                        "cannot create media directory {}: {e}",
                        dir.display()
                    ))
                })?;
                let store = LocalFileSystem::new_with_prefix(&dir)?;
                Ok(Self {
                    store: Arc::new(store),
                    part_bytes: LOCAL_CHUNK_BYTES,
                })
            }
            MediaStorage::S3 => {
                let s3 = config.media.s3.as_ref().ok_or_else(|| {
                    MediaError::Internal("media.storage is \"s3\" without [media.s3]".to_owned())
                })?;
                Ok(Self {
                    store: Arc::new(s3_store(s3)?),
                    part_bytes: S3_PART_BYTES,
                })
            }
        }
    }

    /// Streams `body` to `key`, refusing (and discarding) it once it exceeds `limit` bytes.
    /// Returns the number of bytes stored.
    pub async fn write<S, E>(&self, key: &str, mut body: S, limit: u64) -> Result<u64, MediaError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin + Send,
        E: std::fmt::Display,
    {
        let mut writer =
            BufWriter::with_capacity(self.store.clone(), Path::from(key), self.part_bytes)
                .with_max_concurrency(PARTS_IN_FLIGHT);
        let mut size: u64 = 0;
        let outcome = async {
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| MediaError::BodyRead(e.to_string()))?;
                size += chunk.len() as u64;
                if size > limit {
                    return Err(MediaError::TooLarge(format!(
                        "The upload exceeds the limit of {limit} bytes"
                    )));
                }
                writer.put(chunk).await?;
            }
            writer.shutdown().await.map_err(object_store_io)?;
            Ok(size)
        }
        .await;
        if outcome.is_err() {
            // Best effort: the staging file or multipart upload is what is left to clean.
            if let Err(e) = writer.abort().await {
                tracing::warn!(key, error = %e, "could not abort a failed media write");
            }
        }
        outcome
    }

    pub async fn put(&self, key: &str, bytes: Bytes) -> Result<(), MediaError> {
        self.store.put(&Path::from(key), bytes.into()).await?;
        Ok(())
    }

    /// The stored bytes of `key`, as a stream of bounded chunks.
    pub async fn read(&self, key: &str) -> Result<ByteStream, MediaError> {
        let result = self.store.get(&Path::from(key)).await?;
        Ok(match result.payload {
            GetResultPayload::File(file, _) => {
                let file = tokio::fs::File::from_std(file);
                tokio_util::io::ReaderStream::with_capacity(file, READ_CHUNK_BYTES)
                    .map_err(|e| MediaError::Internal(format!("reading media: {e}")))
                    .boxed()
            }
            GetResultPayload::Stream(stream) => stream.map_err(MediaError::from).boxed(),
        })
    }

    /// The whole object, for the few readers that need it at once (thumbnailing).
    pub async fn read_all(&self, key: &str) -> Result<Bytes, MediaError> {
        Ok(self.store.get(&Path::from(key)).await?.bytes().await?)
    }

    pub async fn delete(&self, key: &str) -> Result<(), MediaError> {
        match self.store.delete(&Path::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

fn s3_store(s3: &S3Config) -> Result<impl ObjectStore, MediaError> {
    let mut builder = AmazonS3Builder::new()
        .with_bucket_name(&s3.bucket)
        .with_region(&s3.region)
        .with_allow_http(s3.allow_http);
    if !s3.endpoint.is_empty() {
        builder = builder.with_endpoint(&s3.endpoint);
    }
    if !s3.access_key_id.value().is_empty() {
        builder = builder
            .with_access_key_id(s3.access_key_id.value())
            .with_secret_access_key(s3.secret_access_key.value());
    }
    Ok(object_store::prefix::PrefixStore::new(
        builder.build()?,
        Path::from(s3.prefix.as_str()),
    ))
}

fn object_store_io(error: std::io::Error) -> MediaError {
    MediaError::Internal(format!("writing media: {error}"))
}
