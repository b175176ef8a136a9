//! End-to-end encryption keys (spec: "Key management API", "Cross-signing"): upload, query,
//! claim, changes, cross-signing keys and signatures.

use std::sync::Arc;

use axum::{Router, extract::State};
use ruma::api::client::keys::{
    claim_keys, get_key_changes, get_keys, upload_keys, upload_signatures, upload_signing_keys,
};
use tessera_core::{Services, e2ee::SigningKeysUpload};
use tessera_federation::edge::{ApiError, RumaResponse};

use crate::{route::RumaRoutes, ruma_wrapper::Ruma};

type ApiResult<T> = Result<RumaResponse<T>, ApiError>;

pub(crate) fn routes(router: Router<Arc<Services>>) -> Router<Arc<Services>> {
    router
        .ruma::<upload_keys::v3::Request, _, _>(upload)
        .ruma::<get_keys::v3::Request, _, _>(query)
        .ruma::<claim_keys::v3::Request, _, _>(claim)
        .ruma::<get_key_changes::v3::Request, _, _>(changes)
        .ruma::<upload_signing_keys::v3::Request, _, _>(upload_signing)
        .ruma::<upload_signatures::v3::Request, _, _>(upload_signatures)
}

async fn upload(
    State(s): State<Arc<Services>>,
    req: Ruma<upload_keys::v3::Request>,
) -> ApiResult<upload_keys::v3::Response> {
    let caller = req.caller()?.clone();
    let counts = s.e2ee.upload_keys(&caller, req.body).await?;
    Ok(RumaResponse(upload_keys::v3::Response::new(counts)))
}

async fn query(
    State(s): State<Arc<Services>>,
    req: Ruma<get_keys::v3::Request>,
) -> ApiResult<get_keys::v3::Response> {
    let caller = req.caller()?;
    Ok(RumaResponse(
        s.e2ee
            .query_keys(&caller.user_id, &req.body, &s.federation.client)
            .await?,
    ))
}

async fn claim(
    State(s): State<Arc<Services>>,
    req: Ruma<claim_keys::v3::Request>,
) -> ApiResult<claim_keys::v3::Response> {
    req.caller()?;
    Ok(RumaResponse(
        s.e2ee.claim_keys(&req.body, &s.federation.client).await?,
    ))
}

async fn changes(
    State(s): State<Arc<Services>>,
    req: Ruma<get_key_changes::v3::Request>,
) -> ApiResult<get_key_changes::v3::Response> {
    let caller = req.caller()?;
    let lists = s
        .key_changes(&caller.user_id, &req.body.from, &req.body.to)
        .await?;
    Ok(RumaResponse(get_key_changes::v3::Response::new(
        lists.changed,
        lists.left,
    )))
}

async fn upload_signing(
    State(s): State<Arc<Services>>,
    req: Ruma<upload_signing_keys::v3::Request>,
) -> ApiResult<upload_signing_keys::v3::Response> {
    let caller = req.caller()?;
    let upload = SigningKeysUpload {
        master: req.body.master_key.clone(),
        self_signing: req.body.self_signing_key.clone(),
        user_signing: req.body.user_signing_key.clone(),
    };
    if s.e2ee
        .signing_keys_upload_needs_auth(&caller.user_id, &upload)
        .await?
    {
        s.users
            .confirm_with_password(
                "upload_signing_keys",
                &caller.user_id,
                req.body.auth.as_ref(),
            )
            .await?;
    }
    s.e2ee.upload_signing_keys(&caller.user_id, &upload).await?;
    Ok(RumaResponse(upload_signing_keys::v3::Response::new()))
}

async fn upload_signatures(
    State(s): State<Arc<Services>>,
    req: Ruma<upload_signatures::v3::Request>,
) -> ApiResult<upload_signatures::v3::Response> {
    let caller = req.caller()?;
    let failures = s
        .e2ee
        .upload_signatures(caller, &req.body.signed_keys, &s.federation.client)
        .await?;
    let mut response = upload_signatures::v3::Response::new();
    for failure in failures {
        // ruma's failure type has no constructor: it is built from its wire form.
        let entry: upload_signatures::v3::Failure = serde_json::from_value(serde_json::json!({
            "errcode": "M_INVALID_SIGNATURE",
            "error": failure.message,
        }))
        .map_err(|e| ApiError::internal(format!("signature failure: {e}")))?;
        response
            .failures
            .entry(failure.user_id)
            .or_default()
            .insert(failure.key_id, entry);
    }
    Ok(RumaResponse(response))
}
