//! Membership: join, invite, knock, leave, kick, ban, unban, forget, and member lists.

use std::sync::Arc;

use axum::{Router, extract::State};
use ruma::{
    api::client::{
        knock::knock_room,
        membership::{
            ban_user, forget_room, get_member_events, invite_user, join_room_by_id,
            join_room_by_id_or_alias, joined_members, kick_user, leave_room, unban_user,
        },
    },
    serde::Raw,
};
use tessera_core::{
    Services,
    rooms::{Members, MembershipChange, token::StreamToken},
};
use tessera_federation::edge::{ApiError, RumaResponse};

use crate::{route::RumaRoutes, ruma_wrapper::Ruma};

type ApiResult<T> = Result<RumaResponse<T>, ApiError>;

pub(crate) fn routes(router: Router<Arc<Services>>) -> Router<Arc<Services>> {
    router
        .ruma::<join_room_by_id::v3::Request, _, _>(join_by_id)
        .ruma::<join_room_by_id_or_alias::v3::Request, _, _>(join_by_id_or_alias)
        .ruma::<knock_room::v3::Request, _, _>(knock)
        .ruma::<invite_user::v3::Request, _, _>(invite)
        .ruma::<leave_room::v3::Request, _, _>(leave)
        .ruma::<kick_user::v3::Request, _, _>(kick)
        .ruma::<ban_user::v3::Request, _, _>(ban)
        .ruma::<unban_user::v3::Request, _, _>(unban)
        .ruma::<forget_room::v3::Request, _, _>(forget)
        .ruma::<get_member_events::v3::Request, _, _>(members)
        .ruma::<joined_members::v3::Request, _, _>(joined)
}

async fn join_by_id(
    State(s): State<Arc<Services>>,
    req: Ruma<join_room_by_id::v3::Request>,
) -> ApiResult<join_room_by_id::v3::Response> {
    let caller = req.caller()?;
    let room_id = &req.body.room_id;
    let servers: Vec<_> = room_id
        .server_name()
        .map(ToOwned::to_owned)
        .into_iter()
        .collect();
    s.join(
        &caller.user_id,
        room_id,
        &servers,
        req.body.reason.as_deref(),
    )
    .await?;
    // Joining a room that carries a friend request accepts it.
    s.im.joined(&caller.user_id, room_id).await?;
    Ok(RumaResponse(join_room_by_id::v3::Response::new(
        room_id.clone(),
    )))
}

async fn join_by_id_or_alias(
    State(s): State<Arc<Services>>,
    req: Ruma<join_room_by_id_or_alias::v3::Request>,
) -> ApiResult<join_room_by_id_or_alias::v3::Response> {
    let caller = req.caller()?;
    // An alias names servers in the room; a room ID comes with the client's `via` servers.
    let (room_id, servers) = match <&ruma::RoomId>::try_from(&*req.body.room_id_or_alias) {
        Ok(room_id) => {
            let mut servers = req.body.via.clone();
            servers.extend(room_id.server_name().map(ToOwned::to_owned));
            (room_id.to_owned(), servers)
        }
        Err(alias) => s.resolve_alias(alias).await?,
    };
    s.join(
        &caller.user_id,
        &room_id,
        &servers,
        req.body.reason.as_deref(),
    )
    .await?;
    s.im.joined(&caller.user_id, &room_id).await?;
    Ok(RumaResponse(join_room_by_id_or_alias::v3::Response::new(
        room_id,
    )))
}

async fn knock(
    State(s): State<Arc<Services>>,
    req: Ruma<knock_room::v3::Request>,
) -> ApiResult<knock_room::v3::Response> {
    let caller = req.caller()?;
    let (room_id, servers) = match <&ruma::RoomId>::try_from(&*req.body.room_id_or_alias) {
        Ok(room_id) => {
            let mut servers = req.body.via.clone();
            servers.extend(room_id.server_name().map(ToOwned::to_owned));
            (room_id.to_owned(), servers)
        }
        Err(alias) => s.resolve_alias(alias).await?,
    };
    s.knock(
        &caller.user_id,
        &room_id,
        &servers,
        req.body.reason.as_deref(),
    )
    .await?;
    Ok(RumaResponse(knock_room::v3::Response::new(room_id)))
}

async fn invite(
    State(s): State<Arc<Services>>,
    req: Ruma<invite_user::v3::Request>,
) -> ApiResult<invite_user::v3::Response> {
    let caller = req.caller()?;
    let invite_user::v3::InvitationRecipient::UserId(recipient) = &req.body.recipient else {
        return Err(ApiError::unrecognized(
            "Third-party invites are not supported by this server",
        ));
    };
    let change = MembershipChange {
        sender: &caller.user_id,
        target: &recipient.user_id,
        membership: "invite",
        reason: recipient.reason.as_deref(),
    };
    s.invite(&req.body.room_id, change, false).await?;
    Ok(RumaResponse(invite_user::v3::Response::new()))
}

async fn leave(
    State(s): State<Arc<Services>>,
    req: Ruma<leave_room::v3::Request>,
) -> ApiResult<leave_room::v3::Response> {
    let caller = req.caller()?;
    s.leave(
        &caller.user_id,
        &req.body.room_id,
        req.body.reason.as_deref(),
    )
    .await?;
    Ok(RumaResponse(leave_room::v3::Response::new()))
}

async fn kick(
    State(s): State<Arc<Services>>,
    req: Ruma<kick_user::v3::Request>,
) -> ApiResult<kick_user::v3::Response> {
    let caller = req.caller()?;
    let change = MembershipChange {
        sender: &caller.user_id,
        target: &req.body.user_id,
        membership: "leave",
        reason: req.body.reason.as_deref(),
    };
    s.rooms
        .change_membership(&req.body.room_id, change, false)
        .await?;
    Ok(RumaResponse(kick_user::v3::Response::new()))
}

async fn ban(
    State(s): State<Arc<Services>>,
    req: Ruma<ban_user::v3::Request>,
) -> ApiResult<ban_user::v3::Response> {
    let caller = req.caller()?;
    let change = MembershipChange {
        sender: &caller.user_id,
        target: &req.body.user_id,
        membership: "ban",
        reason: req.body.reason.as_deref(),
    };
    s.rooms
        .change_membership(&req.body.room_id, change, false)
        .await?;
    Ok(RumaResponse(ban_user::v3::Response::new()))
}

async fn unban(
    State(s): State<Arc<Services>>,
    req: Ruma<unban_user::v3::Request>,
) -> ApiResult<unban_user::v3::Response> {
    let caller = req.caller()?;
    s.rooms
        .unban(
            &req.body.room_id,
            &caller.user_id,
            &req.body.user_id,
            req.body.reason.as_deref(),
        )
        .await?;
    Ok(RumaResponse(unban_user::v3::Response::new()))
}

async fn forget(
    State(s): State<Arc<Services>>,
    req: Ruma<forget_room::v3::Request>,
) -> ApiResult<forget_room::v3::Response> {
    let caller = req.caller()?;
    s.rooms.forget(&caller.user_id, &req.body.room_id).await?;
    Ok(RumaResponse(forget_room::v3::Response::new()))
}

async fn members(
    State(s): State<Arc<Services>>,
    req: Ruma<get_member_events::v3::Request>,
) -> ApiResult<get_member_events::v3::Response> {
    let caller = req.caller()?;
    let query = Members {
        at: req
            .body
            .at
            .as_deref()
            .map(str::parse::<StreamToken>)
            .transpose()?,
        membership: req.body.membership.as_ref().map(|m| m.as_str().to_owned()),
        not_membership: req
            .body
            .not_membership
            .as_ref()
            .map(|m| m.as_str().to_owned()),
    };
    let chunk = s
        .rooms
        .members_for(&caller.user_id, &req.body.room_id, query)
        .await?
        .into_iter()
        .map(Raw::from_json)
        .collect();
    Ok(RumaResponse(get_member_events::v3::Response::new(chunk)))
}

async fn joined(
    State(s): State<Arc<Services>>,
    req: Ruma<joined_members::v3::Request>,
) -> ApiResult<joined_members::v3::Response> {
    let caller = req.caller()?;
    let joined = s
        .rooms
        .joined_members_for(&caller.user_id, &req.body.room_id)
        .await?
        .into_iter()
        .map(|(user, (display_name, avatar_url))| {
            let mut member = joined_members::v3::RoomMember::new();
            member.display_name = display_name;
            member.avatar_url = avatar_url.map(Into::into);
            (user, member)
        })
        .collect();
    Ok(RumaResponse(joined_members::v3::Response::new(joined)))
}
