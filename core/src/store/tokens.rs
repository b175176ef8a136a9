//! Access, refresh and login tokens, looked up by their SHA-256 hash.

use ruma::{OwnedDeviceId, OwnedUserId, UserId};
use sqlx::Row;

use super::{Result, Store, accounts::parse_user_id};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessTokenInfo {
    pub user_id: OwnedUserId,
    pub device_id: OwnedDeviceId,
    /// Milliseconds since the epoch; `None` never expires.
    pub expires_ts: Option<i64>,
    /// Set until the first use of a token issued by `/refresh`: the refresh token it replaces.
    pub predecessor_refresh_hash: Option<String>,
}

/// Kinds of short-lived token, each in its own table of the same shape.
#[derive(Debug, Clone, Copy)]
pub enum ShortLivedToken {
    /// `/login/get_token`, used once by `m.login.token`.
    Login,
    /// `/user/{userId}/openid/request_token`.
    OpenId,
}

impl ShortLivedToken {
    fn table(self) -> &'static str {
        match self {
            Self::Login => "login_tokens",
            Self::OpenId => "openid_tokens",
        }
    }
}

impl Store {
    pub async fn access_token(&self, token_hash: &str) -> Result<Option<AccessTokenInfo>> {
        if let Some(info) = self.token_cache.get(token_hash) {
            return Ok(Some(info));
        }
        let generation = self.token_cache.generation();
        let row = sqlx::query(
            "SELECT user_id, device_id, expires_ts, predecessor_refresh_hash \
             FROM access_tokens WHERE token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let info = AccessTokenInfo {
            user_id: parse_user_id(row.try_get(0)?)?,
            device_id: row.try_get::<String, _>(1)?.into(),
            expires_ts: row.try_get(2)?,
            predecessor_refresh_hash: row.try_get(3)?,
        };
        self.token_cache.insert(token_hash, &info, generation);
        Ok(Some(info))
    }

    /// Exchanges a refresh token for a new access/refresh pair (spec: `POST /refresh`).
    /// The old refresh token stays valid until the new pair is used, so redeeming it again
    /// (a client that lost the response) replaces the unused pair with another. Redeeming a
    /// refresh token counts as using it, which revokes the one it replaced. `None` if the
    /// refresh token is unknown or revoked.
    pub async fn rotate_refresh_token(
        &self,
        old_refresh_hash: &str,
        new_access_hash: &str,
        new_refresh_hash: &str,
        expires_ts: i64,
    ) -> Result<Option<(OwnedUserId, OwnedDeviceId)>> {
        let old_refresh_hash = old_refresh_hash.to_owned();
        let (new_access_hash, new_refresh_hash) =
            (new_access_hash.to_owned(), new_refresh_hash.to_owned());
        let rotated = self
            .revoking_write(move |conn| {
                Box::pin(async move {
                    let row = sqlx::query(
                        "SELECT user_id, device_id, successor_hash FROM refresh_tokens WHERE token_hash = $1",
                    )
                    .bind(&old_refresh_hash)
                    .fetch_optional(&mut *conn)
                    .await?;
                    let Some(row) = row else { return Ok(None) };
                    let user_id: String = row.try_get(0)?;
                    let device_id: String = row.try_get(1)?;
                    let unused_successor: Option<String> = row.try_get(2)?;
                    if let Some(successor) = unused_successor {
                        sqlx::query("DELETE FROM refresh_tokens WHERE token_hash = $1")
                            .bind(successor)
                            .execute(&mut *conn)
                            .await?;
                    }
                    sqlx::query("DELETE FROM refresh_tokens WHERE successor_hash = $1")
                        .bind(&old_refresh_hash)
                        .execute(&mut *conn)
                        .await?;
                    sqlx::query("DELETE FROM access_tokens WHERE user_id = $1 AND device_id = $2")
                        .bind(&user_id)
                        .bind(&device_id)
                        .execute(&mut *conn)
                        .await?;
                    sqlx::query(
                        "INSERT INTO access_tokens \
                         (token_hash, user_id, device_id, expires_ts, predecessor_refresh_hash) \
                         VALUES ($1, $2, $3, $4, $5)",
                    )
                    .bind(new_access_hash)
                    .bind(&user_id)
                    .bind(&device_id)
                    .bind(expires_ts)
                    .bind(&old_refresh_hash)
                    .execute(&mut *conn)
                    .await?;
                    sqlx::query(
                        "INSERT INTO refresh_tokens (token_hash, user_id, device_id) VALUES ($1, $2, $3)",
                    )
                    .bind(&new_refresh_hash)
                    .bind(&user_id)
                    .bind(&device_id)
                    .execute(&mut *conn)
                    .await?;
                    sqlx::query("UPDATE refresh_tokens SET successor_hash = $2 WHERE token_hash = $1")
                        .bind(&old_refresh_hash)
                        .bind(&new_refresh_hash)
                        .execute(&mut *conn)
                        .await?;
                    Ok(Some((user_id, device_id)))
                })
            })
            .await?;
        let Some((user_id, device_id)) = rotated else {
            return Ok(None);
        };
        Ok(Some((parse_user_id(user_id)?, device_id.into())))
    }

    /// The first use of an access token from `/refresh` revokes the refresh token it replaced.
    pub async fn retire_refresh_predecessor(
        &self,
        access_hash: &str,
        refresh_hash: &str,
    ) -> Result<()> {
        let (access_hash, refresh_hash) = (access_hash.to_owned(), refresh_hash.to_owned());
        self.writer
            .write(move |conn| {
                Box::pin(async move {
                    sqlx::query("DELETE FROM refresh_tokens WHERE token_hash = $1")
                        .bind(refresh_hash)
                        .execute(&mut *conn)
                        .await?;
                    sqlx::query(
                        "UPDATE access_tokens SET predecessor_refresh_hash = NULL WHERE token_hash = $1",
                    )
                    .bind(access_hash)
                    .execute(&mut *conn)
                    .await?;
                    Ok(())
                })
            })
            .await
    }

    /// Stores a short-lived token of `kind`, dropping the expired ones of that kind.
    pub async fn add_short_lived_token(
        &self,
        kind: ShortLivedToken,
        token_hash: &str,
        user_id: &UserId,
        expires_ts: i64,
        now_ts: i64,
    ) -> Result<()> {
        let (token_hash, user_id) = (token_hash.to_owned(), user_id.to_string());
        let table = kind.table();
        self.writer
            .write(move |conn| {
                Box::pin(async move {
                    // Unused tokens would otherwise stay forever; they are few and short-lived.
                    sqlx::query(&format!("DELETE FROM {table} WHERE expires_ts < $1"))
                        .bind(now_ts)
                        .execute(&mut *conn)
                        .await?;
                    sqlx::query(&format!(
                        "INSERT INTO {table} (token_hash, user_id, expires_ts) VALUES ($1, $2, $3)"
                    ))
                    .bind(token_hash)
                    .bind(user_id)
                    .bind(expires_ts)
                    .execute(&mut *conn)
                    .await?;
                    Ok(())
                })
            })
            .await
    }

    /// The user of an OpenID token that has not expired; it may be checked again until then.
    pub async fn openid_token_user(
        &self,
        token_hash: &str,
        now_ts: i64,
    ) -> Result<Option<OwnedUserId>> {
        let user_id: Option<String> = sqlx::query_scalar(
            "SELECT user_id FROM openid_tokens WHERE token_hash = $1 AND expires_ts >= $2",
        )
        .bind(token_hash)
        .bind(now_ts)
        .fetch_optional(&self.pool)
        .await?;
        user_id.map(parse_user_id).transpose()
    }

    /// Consumes a login token: it works once, and only before it expires.
    pub async fn take_login_token(
        &self,
        token_hash: &str,
        now_ts: i64,
    ) -> Result<Option<OwnedUserId>> {
        let token_hash = token_hash.to_owned();
        let taken: Option<(String, i64)> = self
            .writer
            .write(move |conn| {
                Box::pin(async move {
                    let row = sqlx::query(
                        "DELETE FROM login_tokens WHERE token_hash = $1 RETURNING user_id, expires_ts",
                    )
                    .bind(token_hash)
                    .fetch_optional(&mut *conn)
                    .await?;
                    row.map(|row| Ok((row.try_get(0)?, row.try_get(1)?))).transpose()
                })
            })
            .await?;
        match taken {
            Some((user_id, expires_ts)) if expires_ts >= now_ts => {
                Ok(Some(parse_user_id(user_id)?))
            }
            _ => Ok(None),
        }
    }
}
