//! The content repository's metadata: media rows, cached thumbnails and URL previews. The bytes
//! themselves live in the media storage (filesystem or S3), never in the database.

use sqlx::Row;

use super::{Result, Store};

/// One media ID of this server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaRow {
    pub media_id: String,
    pub uploader: Option<String>,
    pub content_type: Option<String>,
    pub filename: Option<String>,
    /// `None` until the content is uploaded.
    pub size: Option<i64>,
    pub created_ts: i64,
    pub uploaded_ts: Option<i64>,
    pub unused_expires_ts: Option<i64>,
}

/// Content that has just been stored.
#[derive(Debug, Clone)]
pub struct NewMedia<'a> {
    pub media_id: &'a str,
    pub uploader: Option<&'a str>,
    pub content_type: Option<&'a str>,
    pub filename: Option<&'a str>,
    pub size: i64,
    pub now: i64,
}

/// A cached thumbnail: what it answers (size, method, animated) and what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThumbnailRow {
    pub width: i64,
    pub height: i64,
    pub method: String,
    pub animated: bool,
    pub content_type: String,
    pub size: i64,
}

fn media_row(row: &sqlx::any::AnyRow) -> Result<MediaRow> {
    Ok(MediaRow {
        media_id: row.try_get(0)?,
        uploader: row.try_get(1)?,
        content_type: row.try_get(2)?,
        filename: row.try_get(3)?,
        size: row.try_get(4)?,
        created_ts: row.try_get(5)?,
        uploaded_ts: row.try_get(6)?,
        unused_expires_ts: row.try_get(7)?,
    })
}

impl Store {
    pub async fn media(&self, media_id: &str) -> Result<Option<MediaRow>> {
        let row = sqlx::query(
            "SELECT media_id, uploader, content_type, filename, size, created_ts, uploaded_ts, \
             unused_expires_ts FROM media WHERE media_id = $1",
        )
        .bind(media_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(media_row).transpose()
    }

    /// Records content uploaded in one step (`POST /upload`, preview images).
    pub async fn insert_media(&self, media: NewMedia<'_>) -> Result<()> {
        self.writer
            .execute(
                "INSERT INTO media (media_id, uploader, content_type, filename, size, created_ts, \
                 uploaded_ts) VALUES ($1, $2, $3, $4, $5, $6, $6)",
                vec![
                    media.media_id.into(),
                    media.uploader.into(),
                    media.content_type.into(),
                    media.filename.into(),
                    media.size.into(),
                    media.now.into(),
                ],
            )
            .await?;
        Ok(())
    }

    /// Reserves a media ID for a later upload (`POST /create`), unless `uploader` already has
    /// `max_pending` unexpired reservations; returns whether it was reserved. Expired
    /// reservations are dropped on the way.
    pub async fn create_pending_media(
        &self,
        media_id: &str,
        uploader: &str,
        now: i64,
        expires: i64,
        max_pending: u32,
    ) -> Result<bool> {
        let (media_id, uploader) = (media_id.to_owned(), uploader.to_owned());
        self.writer
            .write(move |conn| {
                Box::pin(async move {
                    sqlx::query(
                        "DELETE FROM media WHERE uploaded_ts IS NULL AND unused_expires_ts <= $1",
                    )
                    .bind(now)
                    .execute(&mut *conn)
                    .await?;
                    let pending: i64 = sqlx::query_scalar(
                        "SELECT COUNT(*) FROM media WHERE uploader = $1 AND uploaded_ts IS NULL",
                    )
                    .bind(&uploader)
                    .fetch_one(&mut *conn)
                    .await?;
                    if pending >= i64::from(max_pending) {
                        return Ok(false);
                    }
                    sqlx::query(
                        "INSERT INTO media (media_id, uploader, created_ts, unused_expires_ts) \
                         VALUES ($1, $2, $3, $4)",
                    )
                    .bind(&media_id)
                    .bind(&uploader)
                    .bind(now)
                    .bind(expires)
                    .execute(&mut *conn)
                    .await?;
                    Ok(true)
                })
            })
            .await
    }

    /// Fills in a reserved media ID once its content is stored; false if it was no longer
    /// pending (uploaded meanwhile, or expired and dropped).
    pub async fn complete_pending_media(&self, media: NewMedia<'_>) -> Result<bool> {
        let updated = self
            .writer
            .execute(
                "UPDATE media SET content_type = $2, filename = $3, size = $4, uploaded_ts = $5, \
                 unused_expires_ts = NULL WHERE media_id = $1 AND uploaded_ts IS NULL",
                vec![
                    media.media_id.into(),
                    media.content_type.into(),
                    media.filename.into(),
                    media.size.into(),
                    media.now.into(),
                ],
            )
            .await?;
        Ok(updated == 1)
    }

    pub async fn media_thumbnail(
        &self,
        media_id: &str,
        width: i64,
        height: i64,
        method: &str,
        animated: bool,
    ) -> Result<Option<ThumbnailRow>> {
        let row = sqlx::query(
            "SELECT width, height, method, animated, content_type, size FROM media_thumbnails \
             WHERE media_id = $1 AND width = $2 AND height = $3 AND method = $4 AND animated = $5",
        )
        .bind(media_id)
        .bind(width)
        .bind(height)
        .bind(method)
        .bind(i64::from(animated))
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| {
            Ok(ThumbnailRow {
                width: row.try_get(0)?,
                height: row.try_get(1)?,
                method: row.try_get(2)?,
                animated: row.try_get::<i64, _>(3)? != 0,
                content_type: row.try_get(4)?,
                size: row.try_get(5)?,
            })
        })
        .transpose()
    }

    /// Records a generated thumbnail; a concurrent generation of the same one is harmless.
    pub async fn insert_media_thumbnail(&self, media_id: &str, thumb: &ThumbnailRow) -> Result<()> {
        self.writer
            .execute(
                "INSERT INTO media_thumbnails (media_id, width, height, method, animated, \
                 content_type, size) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
                vec![
                    media_id.into(),
                    thumb.width.into(),
                    thumb.height.into(),
                    thumb.method.as_str().into(),
                    i64::from(thumb.animated).into(),
                    thumb.content_type.as_str().into(),
                    thumb.size.into(),
                ],
            )
            .await?;
        Ok(())
    }

    /// The cached preview of `url`: when it was fetched and its OpenGraph JSON.
    pub async fn url_preview(&self, url: &str) -> Result<Option<(i64, String)>> {
        let row = sqlx::query("SELECT fetched_ts, og FROM url_previews WHERE url = $1")
            .bind(url)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
            .transpose()
    }

    pub async fn set_url_preview(&self, url: &str, fetched_ts: i64, og: &str) -> Result<()> {
        self.writer
            .execute(
                "INSERT INTO url_previews (url, fetched_ts, og) VALUES ($1, $2, $3) \
                 ON CONFLICT (url) DO UPDATE SET fetched_ts = excluded.fetched_ts, og = excluded.og",
                vec![url.into(), fetched_ts.into(), og.into()],
            )
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::store::testing::test_store;

    use super::NewMedia;

    #[tokio::test]
    async fn pending_uploads_are_limited_and_expire() {
        let (store, _db) = test_store().await;
        for i in 0..2 {
            assert!(
                store
                    .create_pending_media(&format!("m{i}"), "@a:x", 100, 200, 2)
                    .await
                    .unwrap()
            );
        }
        assert!(
            !store
                .create_pending_media("m2", "@a:x", 100, 200, 2)
                .await
                .unwrap()
        );
        // Another user has their own allowance.
        assert!(
            store
                .create_pending_media("m3", "@b:x", 100, 200, 2)
                .await
                .unwrap()
        );
        // Once the first two expired they no longer count.
        assert!(
            store
                .create_pending_media("m4", "@a:x", 200, 300, 2)
                .await
                .unwrap()
        );
        assert_eq!(store.media("m0").await.unwrap(), None);

        let media = |id| NewMedia {
            media_id: id,
            uploader: Some("@a:x"),
            content_type: Some("text/plain"),
            filename: None,
            size: 3,
            now: 250,
        };
        assert!(store.complete_pending_media(media("m4")).await.unwrap());
        assert!(!store.complete_pending_media(media("m4")).await.unwrap());
        let row = store.media("m4").await.unwrap().unwrap();
        assert_eq!((row.size, row.uploaded_ts), (Some(3), Some(250)));
    }
}
