//! Push rules (`/pushrules/...`) and the notifications list (`GET /notifications`).

use std::sync::Arc;

use axum::{Router, extract::State};
use ruma::api::client::push::{
    PushRule, delete_pushrule, get_notifications, get_pushrule, get_pushrule_actions,
    get_pushrule_enabled, get_pushrules_all, get_pushrules_global_scope, set_pushrule,
    set_pushrule_actions, set_pushrule_enabled,
};
use tessera_core::{Services, rooms::NotificationsQuery};
use tessera_federation::edge::{ApiError, RumaResponse};

use crate::{route::RumaRoutes, ruma_wrapper::Ruma};

type ApiResult<T> = Result<RumaResponse<T>, ApiError>;

pub(crate) fn routes(router: Router<Arc<Services>>) -> Router<Arc<Services>> {
    router
        .ruma::<get_pushrules_all::v3::Request, _, _>(all)
        .ruma::<get_pushrules_global_scope::v3::Request, _, _>(global)
        .ruma::<get_pushrule::v3::Request, _, _>(get_rule)
        .ruma::<set_pushrule::v3::Request, _, _>(set_rule)
        .ruma::<delete_pushrule::v3::Request, _, _>(delete_rule)
        .ruma::<get_pushrule_enabled::v3::Request, _, _>(get_enabled)
        .ruma::<set_pushrule_enabled::v3::Request, _, _>(set_enabled)
        .ruma::<get_pushrule_actions::v3::Request, _, _>(get_actions)
        .ruma::<set_pushrule_actions::v3::Request, _, _>(set_actions)
        .ruma::<get_notifications::v3::Request, _, _>(notifications)
}

async fn all(
    State(s): State<Arc<Services>>,
    req: Ruma<get_pushrules_all::v3::Request>,
) -> ApiResult<get_pushrules_all::v3::Response> {
    let ruleset = s.users.push_rules(&req.caller()?.user_id).await?;
    Ok(RumaResponse(get_pushrules_all::v3::Response::new(
        (*ruleset).clone(),
    )))
}

async fn global(
    State(s): State<Arc<Services>>,
    req: Ruma<get_pushrules_global_scope::v3::Request>,
) -> ApiResult<get_pushrules_global_scope::v3::Response> {
    let ruleset = s.users.push_rules(&req.caller()?.user_id).await?;
    Ok(RumaResponse(get_pushrules_global_scope::v3::Response::new(
        (*ruleset).clone(),
    )))
}

async fn get_rule(
    State(s): State<Arc<Services>>,
    req: Ruma<get_pushrule::v3::Request>,
) -> ApiResult<get_pushrule::v3::Response> {
    let body = &req.body;
    let rule = s
        .users
        .push_rule(&req.caller()?.user_id, body.kind.clone(), &body.rule_id)
        .await?;
    Ok(RumaResponse(get_pushrule::v3::Response::new(
        PushRule::from(rule),
    )))
}

async fn set_rule(
    State(s): State<Arc<Services>>,
    req: Ruma<set_pushrule::v3::Request>,
) -> ApiResult<set_pushrule::v3::Response> {
    let user_id = req.caller()?.user_id.clone();
    let body = req.body;
    s.users
        .set_push_rule(
            &user_id,
            body.rule,
            body.before.as_deref(),
            body.after.as_deref(),
        )
        .await?;
    Ok(RumaResponse(set_pushrule::v3::Response::new()))
}

async fn delete_rule(
    State(s): State<Arc<Services>>,
    req: Ruma<delete_pushrule::v3::Request>,
) -> ApiResult<delete_pushrule::v3::Response> {
    let body = &req.body;
    s.users
        .delete_push_rule(&req.caller()?.user_id, body.kind.clone(), &body.rule_id)
        .await?;
    Ok(RumaResponse(delete_pushrule::v3::Response::new()))
}

async fn get_enabled(
    State(s): State<Arc<Services>>,
    req: Ruma<get_pushrule_enabled::v3::Request>,
) -> ApiResult<get_pushrule_enabled::v3::Response> {
    let body = &req.body;
    let rule = s
        .users
        .push_rule(&req.caller()?.user_id, body.kind.clone(), &body.rule_id)
        .await?;
    Ok(RumaResponse(get_pushrule_enabled::v3::Response::new(
        rule.enabled(),
    )))
}

async fn set_enabled(
    State(s): State<Arc<Services>>,
    req: Ruma<set_pushrule_enabled::v3::Request>,
) -> ApiResult<set_pushrule_enabled::v3::Response> {
    let body = &req.body;
    s.users
        .set_push_rule_enabled(
            &req.caller()?.user_id,
            body.kind.clone(),
            &body.rule_id,
            body.enabled,
        )
        .await?;
    Ok(RumaResponse(set_pushrule_enabled::v3::Response::new()))
}

async fn get_actions(
    State(s): State<Arc<Services>>,
    req: Ruma<get_pushrule_actions::v3::Request>,
) -> ApiResult<get_pushrule_actions::v3::Response> {
    let body = &req.body;
    let rule = s
        .users
        .push_rule(&req.caller()?.user_id, body.kind.clone(), &body.rule_id)
        .await?;
    Ok(RumaResponse(get_pushrule_actions::v3::Response::new(
        rule.actions().to_vec(),
    )))
}

async fn set_actions(
    State(s): State<Arc<Services>>,
    req: Ruma<set_pushrule_actions::v3::Request>,
) -> ApiResult<set_pushrule_actions::v3::Response> {
    let user_id = req.caller()?.user_id.clone();
    let body = req.body;
    s.users
        .set_push_rule_actions(&user_id, body.kind, &body.rule_id, body.actions)
        .await?;
    Ok(RumaResponse(set_pushrule_actions::v3::Response::new()))
}

async fn notifications(
    State(s): State<Arc<Services>>,
    req: Ruma<get_notifications::v3::Request>,
) -> ApiResult<get_notifications::v3::Response> {
    let body = &req.body;
    let page = s
        .rooms
        .notifications_for(
            &req.caller()?.user_id,
            NotificationsQuery {
                from: body.from.as_deref(),
                limit: body.limit,
                only_highlight: body.only.as_deref() == Some("highlight"),
            },
        )
        .await?;
    let mut response = get_notifications::v3::Response::new(page.notifications);
    response.next_token = page.next_token;
    Ok(RumaResponse(response))
}
