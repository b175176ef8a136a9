//! A group's generated avatar, as WeChat draws one: the avatars of the group's first members
//! (up to nine, in the order they joined) tiled on one square picture, a coloured tile
//! standing in for a member without a (readable) avatar. It is composited here, stored in the
//! media store as the caller's upload, and set as the room's `m.room.avatar`, marked as
//! generated so that it can be generated again as members change, while an avatar a member
//! chose is never replaced.

use std::{io::Cursor, time::Duration};

use bytes::Bytes;
use futures::{StreamExt, stream};
use image::{DynamicImage, ImageFormat, Rgba, RgbaImage, imageops};
use ruma::{MxcUri, OwnedMxcUri, RoomId, UserId, events::StateEventType};
use serde_json::{Value as JsonValue, json};

use super::group_admin::{check_not_profile_room, state_content};
use crate::{
    Error, Result, Services,
    media::{Access, Method, ThumbnailRequest, UploadInfo},
};

/// The content field marking a room avatar this server generated.
pub const GENERATED: &str = "im.tessera.generated";
/// Members shown on the picture.
pub const MAX_TILES: usize = 9;
/// The picture's side, in pixels.
pub const SIDE: u32 = 240;
/// Space around and between tiles.
const GAP: u32 = 6;
const BACKGROUND: Rgba<u8> = Rgba([221, 222, 224, 255]);
/// The size each member's avatar is fetched at: a tile is at most this large.
const TILE_FETCH: u32 = 120;
/// A thumbnail this large is not an avatar tile.
const MAX_TILE_BYTES: usize = 2 * 1024 * 1024;
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Tiles `tiles` (each a member's user ID and avatar, if any) in a grid: one member fills the
/// picture, two to four make two columns, more make three; a short last row is centred.
pub fn compose(tiles: &[(&UserId, Option<DynamicImage>)]) -> RgbaImage {
    let mut canvas = RgbaImage::from_pixel(SIDE, SIDE, BACKGROUND);
    let count = u32::try_from(tiles.len().min(MAX_TILES)).unwrap_or(1);
    if count == 0 {
        return canvas;
    }
    let columns = match count {
        1 => 1,
        2..=4 => 2,
        _ => 3,
    };
    let rows = count.div_ceil(columns);
    let tile = (SIDE - GAP * (columns + 1)) / columns;
    let top = (SIDE - rows * tile - (rows - 1) * GAP) / 2;
    for (index, (user_id, avatar)) in (0..count).zip(tiles) {
        let row = index / columns;
        let in_row = if row == rows - 1 {
            count - row * columns
        } else {
            columns
        };
        let left = (SIDE - in_row * tile - (in_row - 1) * GAP) / 2;
        let x = left + (index % columns) * (tile + GAP);
        let y = top + row * (tile + GAP);
        let picture = match avatar {
            Some(avatar) => avatar
                .resize_to_fill(tile, tile, imageops::FilterType::Triangle)
                .to_rgba8(),
            None => RgbaImage::from_pixel(tile, tile, placeholder_colour(user_id)),
        };
        imageops::replace(&mut canvas, &picture, i64::from(x), i64::from(y));
    }
    canvas
}

/// A colour of the user's own, so that members without avatars still look apart.
fn placeholder_colour(user_id: &UserId) -> Rgba<u8> {
    // FNV-1a: stable across releases, unlike the standard library's hasher.
    let hash = user_id
        .as_bytes()
        .iter()
        .fold(0x811c_9dc5_u32, |hash, byte| {
            (hash ^ u32::from(*byte)).wrapping_mul(0x0100_0193)
        });
    let [r, g, b, _] = hash.to_le_bytes();
    // Mid-tones: never so dark or light that the grid loses its shape.
    let soften = |c: u8| 64 + c / 2;
    Rgba([soften(r), soften(g), soften(b), 255])
}

impl Services {
    /// Generates the group's avatar from its first members' and sets it as `m.room.avatar`
    /// (`user_id` needs the power to). A room whose avatar a member chose keeps it (409).
    pub async fn generate_group_avatar(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
    ) -> Result<OwnedMxcUri> {
        self.im.require_joined(user_id, room_id).await?;
        check_not_profile_room(&self.store, room_id).await?;
        let store = &self.store;
        let current = state_content(store, room_id, "m.room.avatar", "").await?;
        if let Some(current) = current
            && current["url"].as_str().is_some_and(|url| !url.is_empty())
            && current[GENERATED] != true
        {
            return Err(Error::Conflict(
                "The group has an avatar a member chose; remove it to generate one".to_owned(),
            ));
        }
        let members = self.first_members(room_id).await?;
        let mut tiles = Vec::with_capacity(members.len());
        for (member, avatar_url) in &members {
            let avatar = match avatar_url {
                Some(url) => self.avatar_tile(url).await,
                None => None,
            };
            tiles.push((&**member, avatar));
        }
        let mut png = Vec::new();
        DynamicImage::ImageRgba8(compose(&tiles))
            .write_to(&mut Cursor::new(&mut png), ImageFormat::Png)
            .map_err(|e| Error::Internal(format!("cannot encode the group avatar: {e}")))?;
        let size = png.len();
        let body = stream::iter([Ok::<_, std::convert::Infallible>(Bytes::from(png))]);
        let url = self
            .media
            .upload(
                user_id,
                UploadInfo {
                    content_type: Some("image/png".to_owned()),
                    filename: Some("group-avatar.png".to_owned()),
                    declared_length: None,
                },
                body,
            )
            .await
            .map_err(|e| Error::Internal(format!("cannot store the group avatar: {e}")))?;
        self.rooms
            .send_state(
                user_id,
                room_id,
                StateEventType::RoomAvatar,
                String::new(),
                json!({
                    "url": url,
                    "info": { "mimetype": "image/png", "w": SIDE, "h": SIDE, "size": size },
                    GENERATED: true,
                }),
            )
            .await?;
        Ok(url)
    }

    /// The room's joined members in the order they joined (first [`MAX_TILES`]), with their
    /// avatar in the room.
    async fn first_members(
        &self,
        room_id: &RoomId,
    ) -> Result<Vec<(ruma::OwnedUserId, Option<OwnedMxcUri>)>> {
        let ids: Vec<_> = self
            .store
            .current_state(room_id)
            .await?
            .into_iter()
            .filter(|entry| entry.event_type == "m.room.member")
            .map(|entry| entry.event_id)
            .collect();
        let mut rows = self.store.events(&ids).await?;
        rows.sort_by_key(|row| row.stream_ordering);
        let mut members = Vec::new();
        for row in rows {
            let Ok(event) = serde_json::from_str::<JsonValue>(&row.json) else {
                continue;
            };
            let content = &event["content"];
            let Some(member) = event["state_key"]
                .as_str()
                .and_then(|key| UserId::parse(key).ok())
            else {
                continue;
            };
            if content["membership"] != "join" {
                continue;
            }
            let avatar = content["avatar_url"]
                .as_str()
                .filter(|url| !url.is_empty())
                .map(OwnedMxcUri::from);
            members.push((member, avatar));
            if members.len() == MAX_TILES {
                break;
            }
        }
        Ok(members)
    }

    /// A member's avatar as a small thumbnail, from this server's media or another's; `None`
    /// when it cannot be had or read (the member gets a coloured tile instead).
    async fn avatar_tile(&self, url: &MxcUri) -> Option<DynamicImage> {
        let (server, media_id) = url.parts().ok()?;
        let request = ThumbnailRequest {
            width: TILE_FETCH,
            height: TILE_FETCH,
            method: Method::Crop,
            animated: false,
        };
        let content = match self
            .thumbnail_media(
                server,
                media_id,
                request,
                FETCH_TIMEOUT,
                Access::Authenticated,
            )
            .await
        {
            Ok(content) => content,
            Err(e) => {
                tracing::debug!(%url, error = %e, "an avatar left out of a group avatar");
                return None;
            }
        };
        let mut bytes = Vec::new();
        let mut body = content.body;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.ok()?;
            if bytes.len() + chunk.len() > MAX_TILE_BYTES {
                return None;
            }
            bytes.extend_from_slice(&chunk);
        }
        image::load_from_memory(&bytes).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str) -> ruma::OwnedUserId {
        UserId::parse(format!("@{name}:example.org")).unwrap()
    }

    fn solid(colour: [u8; 3]) -> DynamicImage {
        DynamicImage::ImageRgba8(RgbaImage::from_pixel(
            50,
            50,
            Rgba([colour[0], colour[1], colour[2], 255]),
        ))
    }

    #[test]
    fn one_member_fills_the_picture_inside_the_margin() {
        let alice = user("alice");
        let picture = compose(&[(&alice, Some(solid([255, 0, 0])))]);
        assert_eq!(picture.dimensions(), (SIDE, SIDE));
        assert_eq!(
            picture.get_pixel(SIDE / 2, SIDE / 2),
            &Rgba([255, 0, 0, 255])
        );
        assert_eq!(picture.get_pixel(1, 1), &BACKGROUND);
    }

    #[test]
    fn three_members_make_two_rows_with_the_last_centred() {
        let (a, b, c) = (user("a"), user("b"), user("c"));
        let picture = compose(&[
            (&a, Some(solid([255, 0, 0]))),
            (&b, Some(solid([0, 255, 0]))),
            (&c, Some(solid([0, 0, 255]))),
        ]);
        let tile = (SIDE - 3 * GAP) / 2;
        let quarter = GAP + tile / 2;
        assert_eq!(picture.get_pixel(quarter, quarter), &Rgba([255, 0, 0, 255]));
        assert_eq!(
            picture.get_pixel(SIDE - quarter, quarter),
            &Rgba([0, 255, 0, 255])
        );
        // The third is alone on its row, in the middle.
        assert_eq!(
            picture.get_pixel(SIDE / 2, SIDE - quarter),
            &Rgba([0, 0, 255, 255])
        );
    }

    #[test]
    fn members_without_avatars_get_distinct_stable_colours() {
        let (a, b) = (user("a"), user("b"));
        let picture = compose(&[(&a, None), (&b, None)]);
        let tile = (SIDE - 3 * GAP) / 2;
        let centre_y = SIDE / 2;
        let first = *picture.get_pixel(GAP + tile / 2, centre_y);
        let second = *picture.get_pixel(SIDE - GAP - tile / 2, centre_y);
        assert_eq!(first, placeholder_colour(&a));
        assert_eq!(second, placeholder_colour(&b));
        assert_ne!(first, second);
        assert_eq!(placeholder_colour(&a), placeholder_colour(&user("a")));
    }

    #[test]
    fn at_most_nine_members_are_drawn_in_three_columns() {
        let users: Vec<_> = (0..12).map(|i| user(&format!("u{i}"))).collect();
        let tiles: Vec<_> = users
            .iter()
            .map(|u| (&**u, Some(solid([9, 9, 9]))))
            .collect();
        let picture = compose(&tiles);
        let tile = (SIDE - 4 * GAP) / 3;
        // The bottom-right tile is drawn; the gaps between tiles are background.
        assert_eq!(
            picture.get_pixel(SIDE - GAP - tile / 2, SIDE - GAP - tile / 2),
            &Rgba([9, 9, 9, 255])
        );
        assert_eq!(
            picture.get_pixel(GAP + tile + GAP / 2, SIDE / 2),
            &BACKGROUND
        );
    }
}
