//! `PUT /_matrix/federation/v1/send/{txnId}`: PDUs and EDUs from another server.

use std::sync::Arc;

use axum::extract::State;
use ruma::api::federation::transactions::send_transaction_message;
use tessera_core::Services;

use crate::{
    edge::{ApiError, RumaResponse},
    extract::Signed,
};

pub async fn send(
    State(s): State<Arc<Services>>,
    request: Signed<send_transaction_message::v1::Request>,
) -> Result<RumaResponse<send_transaction_message::v1::Response>, ApiError> {
    let body = &request.body;
    if body.origin != request.origin {
        return Err(ApiError::forbidden(format!(
            "The transaction claims to come from {}, but {} signed it",
            body.origin, request.origin
        )));
    }
    let results = s
        .receive_transaction(
            &request.origin,
            body.transaction_id.as_str(),
            &body.pdus,
            &body.edus,
        )
        .await?;
    Ok(RumaResponse(send_transaction_message::v1::Response::new(
        results,
    )))
}
