//! Moments, following MSC4501 (rooms as social media pages, its unstable prefix): each user's
//! profile room holds their posts; a like is an `m.reaction`, a comment a threaded reply, a
//! repost a post with a `social.relates_to` repost. The feed merges the profile rooms a user
//! belongs to, newest first, with WeChat's visibility rule.

mod feed;
mod post;
mod profile;

pub use feed::{CommentView, FeedItem, FeedPage, MAX_FEED_LIMIT};
pub use post::{MAX_IMAGES, NewMoment};

/// The room type of profile rooms.
pub const PROFILE_TYPE: &str = "org.matrix.msc4501.social.profile";
/// The state event naming a profile room's owner.
pub const PROFILE_USER_ID: &str = "org.matrix.msc4501.social.profile_user_id";
/// The profile field pointing at a user's profile room.
pub const PROFILE_ROOM_FIELD: &str = "org.matrix.msc4501.social.profile_room_id";
/// A post's event type.
pub const POST_TYPE: &str = "org.matrix.msc4501.social.post";
/// The content key of a cross-room post reference.
pub const RELATES_TO: &str = "org.matrix.msc4501.social.relates_to";
/// The `rel_type` of a repost.
pub const REPOST: &str = "org.matrix.msc4501.social.repost";
/// The reaction key that is a like (MSC4501: "👍").
pub const LIKE_KEY: &str = "\u{1f44d}";
