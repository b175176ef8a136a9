//! Server-side key backup (spec: "Server-side key backups"): `/room_keys/version` and
//! `/room_keys/keys` at all three levels.

use std::{collections::BTreeMap, sync::Arc};

use axum::{Router, extract::State};
use ruma::{
    UInt,
    api::client::backup::{
        RoomKeyBackup, add_backup_keys, add_backup_keys_for_room, add_backup_keys_for_session,
        create_backup_version, delete_backup_keys, delete_backup_keys_for_room,
        delete_backup_keys_for_session, delete_backup_version, get_backup_info, get_backup_keys,
        get_backup_keys_for_room, get_backup_keys_for_session, get_latest_backup_info,
        update_backup_version,
    },
    serde::Raw,
};
use tessera_core::{
    Services,
    e2ee::KeysToBackUp,
    store::{BackupKeyScope, BackupKeysState, BackupVersion},
};
use tessera_federation::edge::{ApiError, RumaResponse};

use crate::{route::RumaRoutes, ruma_wrapper::Ruma};

type ApiResult<T> = Result<RumaResponse<T>, ApiError>;

pub(crate) fn routes(router: Router<Arc<Services>>) -> Router<Arc<Services>> {
    router
        .ruma::<create_backup_version::v3::Request, _, _>(create_version)
        .ruma::<get_latest_backup_info::v3::Request, _, _>(latest_version)
        .ruma::<get_backup_info::v3::Request, _, _>(get_version)
        .ruma::<update_backup_version::v3::Request, _, _>(update_version)
        .ruma::<delete_backup_version::v3::Request, _, _>(delete_version)
        .ruma::<add_backup_keys::v3::Request, _, _>(put_keys)
        .ruma::<add_backup_keys_for_room::v3::Request, _, _>(put_room_keys)
        .ruma::<add_backup_keys_for_session::v3::Request, _, _>(put_session_key)
        .ruma::<get_backup_keys::v3::Request, _, _>(get_keys)
        .ruma::<get_backup_keys_for_room::v3::Request, _, _>(get_room_keys)
        .ruma::<get_backup_keys_for_session::v3::Request, _, _>(get_session_key)
        .ruma::<delete_backup_keys::v3::Request, _, _>(delete_keys)
        .ruma::<delete_backup_keys_for_room::v3::Request, _, _>(delete_room_keys)
        .ruma::<delete_backup_keys_for_session::v3::Request, _, _>(delete_session_key)
}

fn count(value: i64) -> UInt {
    UInt::try_from(value).unwrap_or_default()
}

/// A version's algorithm and auth data, as the client sent them.
fn algorithm(
    version: &BackupVersion,
) -> Result<Raw<ruma::api::client::backup::BackupAlgorithm>, ApiError> {
    let json = format!(
        r#"{{"algorithm":{},"auth_data":{}}}"#,
        serde_json::Value::from(version.algorithm.as_str()),
        version.auth_data
    );
    serde_json::value::RawValue::from_string(json)
        .map(Raw::from_json)
        .map_err(|e| ApiError::internal(format!("stored backup version: {e}")))
}

async fn create_version(
    State(s): State<Arc<Services>>,
    req: Ruma<create_backup_version::v3::Request>,
) -> ApiResult<create_backup_version::v3::Response> {
    let caller = req.caller()?;
    let version = s
        .e2ee
        .create_backup_version(&caller.user_id, &req.body.algorithm)
        .await?;
    Ok(RumaResponse(create_backup_version::v3::Response::new(
        version,
    )))
}

async fn latest_version(
    State(s): State<Arc<Services>>,
    req: Ruma<get_latest_backup_info::v3::Request>,
) -> ApiResult<get_latest_backup_info::v3::Response> {
    let caller = req.caller()?;
    let version = s.e2ee.backup_version(&caller.user_id, None).await?;
    Ok(RumaResponse(get_latest_backup_info::v3::Response::new(
        algorithm(&version)?,
        count(version.count),
        version.etag.to_string(),
        version.version.to_string(),
    )))
}

async fn get_version(
    State(s): State<Arc<Services>>,
    req: Ruma<get_backup_info::v3::Request>,
) -> ApiResult<get_backup_info::v3::Response> {
    let caller = req.caller()?;
    let version = s
        .e2ee
        .backup_version(&caller.user_id, Some(&req.body.version))
        .await?;
    Ok(RumaResponse(get_backup_info::v3::Response::new(
        algorithm(&version)?,
        count(version.count),
        version.etag.to_string(),
        version.version.to_string(),
    )))
}

async fn update_version(
    State(s): State<Arc<Services>>,
    req: Ruma<update_backup_version::v3::Request>,
) -> ApiResult<update_backup_version::v3::Response> {
    let caller = req.caller()?;
    s.e2ee
        .update_backup_version(&caller.user_id, &req.body.version, &req.body.algorithm)
        .await?;
    Ok(RumaResponse(update_backup_version::v3::Response::new()))
}

async fn delete_version(
    State(s): State<Arc<Services>>,
    req: Ruma<delete_backup_version::v3::Request>,
) -> ApiResult<delete_backup_version::v3::Response> {
    let caller = req.caller()?;
    s.e2ee
        .delete_backup_version(&caller.user_id, &req.body.version)
        .await?;
    Ok(RumaResponse(delete_backup_version::v3::Response::new()))
}

/// Every write of keys, at whichever level, answers with the version's etag and count.
fn etag_and_count(state: BackupKeysState) -> (String, UInt) {
    (state.etag.to_string(), count(state.count))
}

async fn put_keys(
    State(s): State<Arc<Services>>,
    req: Ruma<add_backup_keys::v3::Request>,
) -> ApiResult<add_backup_keys::v3::Response> {
    let caller = req.caller()?;
    let keys: KeysToBackUp = req
        .body
        .rooms
        .iter()
        .map(|(room_id, backup)| (room_id.clone(), backup.sessions.clone()))
        .collect();
    let (etag, count) = etag_and_count(
        s.e2ee
            .put_backup_keys(&caller.user_id, &req.body.version, &keys)
            .await?,
    );
    Ok(RumaResponse(add_backup_keys::v3::Response::new(
        etag, count,
    )))
}

async fn put_room_keys(
    State(s): State<Arc<Services>>,
    req: Ruma<add_backup_keys_for_room::v3::Request>,
) -> ApiResult<add_backup_keys_for_room::v3::Response> {
    let caller = req.caller()?;
    let keys = BTreeMap::from([(req.body.room_id.clone(), req.body.sessions.clone())]);
    let (etag, count) = etag_and_count(
        s.e2ee
            .put_backup_keys(&caller.user_id, &req.body.version, &keys)
            .await?,
    );
    Ok(RumaResponse(add_backup_keys_for_room::v3::Response::new(
        etag, count,
    )))
}

async fn put_session_key(
    State(s): State<Arc<Services>>,
    req: Ruma<add_backup_keys_for_session::v3::Request>,
) -> ApiResult<add_backup_keys_for_session::v3::Response> {
    let caller = req.caller()?;
    let keys = BTreeMap::from([(
        req.body.room_id.clone(),
        BTreeMap::from([(req.body.session_id.clone(), req.body.session_data.clone())]),
    )]);
    let (etag, count) = etag_and_count(
        s.e2ee
            .put_backup_keys(&caller.user_id, &req.body.version, &keys)
            .await?,
    );
    Ok(RumaResponse(
        add_backup_keys_for_session::v3::Response::new(etag, count),
    ))
}

async fn get_keys(
    State(s): State<Arc<Services>>,
    req: Ruma<get_backup_keys::v3::Request>,
) -> ApiResult<get_backup_keys::v3::Response> {
    let caller = req.caller()?;
    let keys = s
        .e2ee
        .backup_keys(&caller.user_id, &req.body.version, BackupKeyScope::All)
        .await?;
    let mut rooms: BTreeMap<_, BTreeMap<String, _>> = BTreeMap::new();
    for (key, raw) in keys {
        rooms
            .entry(key.room_id)
            .or_default()
            .insert(key.session_id, raw);
    }
    Ok(RumaResponse(get_backup_keys::v3::Response::new(
        rooms
            .into_iter()
            .map(|(room_id, sessions)| (room_id, RoomKeyBackup::new(sessions)))
            .collect(),
    )))
}

async fn get_room_keys(
    State(s): State<Arc<Services>>,
    req: Ruma<get_backup_keys_for_room::v3::Request>,
) -> ApiResult<get_backup_keys_for_room::v3::Response> {
    let caller = req.caller()?;
    let keys = s
        .e2ee
        .backup_keys(
            &caller.user_id,
            &req.body.version,
            BackupKeyScope::Room(&req.body.room_id),
        )
        .await?;
    Ok(RumaResponse(get_backup_keys_for_room::v3::Response::new(
        keys.into_iter()
            .map(|(key, raw)| (key.session_id, raw))
            .collect(),
    )))
}

async fn get_session_key(
    State(s): State<Arc<Services>>,
    req: Ruma<get_backup_keys_for_session::v3::Request>,
) -> ApiResult<get_backup_keys_for_session::v3::Response> {
    let caller = req.caller()?;
    let key = s
        .e2ee
        .backup_keys(
            &caller.user_id,
            &req.body.version,
            BackupKeyScope::Session(&req.body.room_id, &req.body.session_id),
        )
        .await?
        .pop()
        .ok_or_else(|| {
            ApiError::from(tessera_core::Error::NotFound(format!(
                "No key for session {} in the backup",
                req.body.session_id
            )))
        })?;
    Ok(RumaResponse(
        get_backup_keys_for_session::v3::Response::new(key.1),
    ))
}

async fn delete_keys(
    State(s): State<Arc<Services>>,
    req: Ruma<delete_backup_keys::v3::Request>,
) -> ApiResult<delete_backup_keys::v3::Response> {
    let caller = req.caller()?;
    let scope = BackupKeyScope::All;
    let (etag, count) = etag_and_count(
        s.e2ee
            .delete_backup_keys(&caller.user_id, &req.body.version, scope)
            .await?,
    );
    Ok(RumaResponse(delete_backup_keys::v3::Response::new(
        etag, count,
    )))
}

async fn delete_room_keys(
    State(s): State<Arc<Services>>,
    req: Ruma<delete_backup_keys_for_room::v3::Request>,
) -> ApiResult<delete_backup_keys_for_room::v3::Response> {
    let caller = req.caller()?;
    let scope = BackupKeyScope::Room(&req.body.room_id);
    let (etag, count) = etag_and_count(
        s.e2ee
            .delete_backup_keys(&caller.user_id, &req.body.version, scope)
            .await?,
    );
    Ok(RumaResponse(
        delete_backup_keys_for_room::v3::Response::new(etag, count),
    ))
}

async fn delete_session_key(
    State(s): State<Arc<Services>>,
    req: Ruma<delete_backup_keys_for_session::v3::Request>,
) -> ApiResult<delete_backup_keys_for_session::v3::Response> {
    let caller = req.caller()?;
    let scope = BackupKeyScope::Session(&req.body.room_id, &req.body.session_id);
    let (etag, count) = etag_and_count(
        s.e2ee
            .delete_backup_keys(&caller.user_id, &req.body.version, scope)
            .await?,
    );
    Ok(RumaResponse(
        delete_backup_keys_for_session::v3::Response::new(etag, count),
    ))
}
