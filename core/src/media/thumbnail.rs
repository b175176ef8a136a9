//! Thumbnail generation (spec: "Thumbnails"): sizes snapped to the spec's defaults, `crop` and
//! `scale`, never upscaled, animated on request. Pure functions over bytes, run off the async
//! threads by the caller.

use std::io::Cursor;

use image::{
    AnimationDecoder, DynamicImage, Frame, GenericImageView, ImageFormat, ImageReader, RgbaImage,
    codecs::{gif::GifDecoder, png::PngDecoder, webp::WebPDecoder},
};

use super::MediaError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Crop,
    Scale,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Crop => "crop",
            Self::Scale => "scale",
        }
    }
}

/// The spec's recommended thumbnail sizes; requests are served by the smallest that covers them.
pub const DEFAULT_SIZES: [(u32, u32, Method); 5] = [
    (32, 32, Method::Crop),
    (96, 96, Method::Crop),
    (320, 240, Method::Scale),
    (640, 480, Method::Scale),
    (800, 600, Method::Scale),
];

/// The largest thumbnail edge served; larger requests are better served by the download.
pub const MAX_THUMBNAIL_EDGE: u32 = 4096;
/// Animated thumbnails keep at most this many frames (each a full RGBA buffer in memory);
/// longer animations get a still.
const MAX_ANIMATION_FRAMES: usize = 100;
const JPEG_QUALITY: u8 = 80;

/// The size a request is served at: the smallest default size of its method at least as large
/// in both dimensions (and, for crop, of the same aspect ratio, which a crop must keep), else
/// exactly what was asked.
pub fn served_size(width: u32, height: u32, method: Method) -> Result<(u32, u32), MediaError> {
    if width == 0 || height == 0 {
        return Err(MediaError::CannotThumbnail(
            "width and height must be at least 1".to_owned(),
        ));
    }
    if width > MAX_THUMBNAIL_EDGE || height > MAX_THUMBNAIL_EDGE {
        return Err(MediaError::CannotThumbnail(format!(
            "width and height may be at most {MAX_THUMBNAIL_EDGE}; download the content instead"
        )));
    }
    Ok(DEFAULT_SIZES
        .iter()
        .find(|&&(w, h, m)| {
            let same_aspect = u64::from(w) * u64::from(height) == u64::from(h) * u64::from(width);
            m == method && w >= width && h >= height && (method == Method::Scale || same_aspect)
        })
        .map_or((width, height), |&(w, h, _)| (w, h)))
}

/// What to send for a thumbnail request.
#[derive(Debug)]
pub enum Outcome {
    /// The content itself: it is no larger than the thumbnail would be.
    Original,
    Thumbnail(Thumbnail),
}

#[derive(Debug)]
pub struct Thumbnail {
    pub bytes: Vec<u8>,
    pub content_type: &'static str,
    pub width: u32,
    pub height: u32,
}

/// Thumbnails `source` into a `width` x `height` box with `method`. Images over `max_pixels`
/// are refused with `TooLarge` before being decoded.
pub fn generate(
    source: &[u8],
    width: u32,
    height: u32,
    method: Method,
    animated: bool,
    max_pixels: u64,
) -> Result<Outcome, MediaError> {
    let undecodable = |e: image::ImageError| {
        MediaError::CannotThumbnail(format!(
            "The content is not an image this server can read: {e}"
        ))
    };
    let reader = ImageReader::new(Cursor::new(source))
        .with_guessed_format()
        .map_err(|e| MediaError::CannotThumbnail(e.to_string()))?;
    let format = reader.format().ok_or_else(|| {
        MediaError::CannotThumbnail("The content is not an image this server can read".to_owned())
    })?;
    let (source_width, source_height) = reader.into_dimensions().map_err(undecodable)?;
    if u64::from(source_width) * u64::from(source_height) > max_pixels {
        return Err(MediaError::TooLarge(format!(
            "The image has more than {max_pixels} pixels, too many to thumbnail"
        )));
    }
    let is_animated = is_animated(source, format);
    let fits = source_width <= width && source_height <= height;
    // A small still is its own thumbnail; a small animation is too when animation is wanted.
    if fits && (!is_animated || animated) {
        return Ok(Outcome::Original);
    }
    if animated
        && is_animated
        && let Some(thumbnail) = animated_thumbnail(source, format, width, height, method)?
    {
        return Ok(Outcome::Thumbnail(thumbnail));
    }
    let image = image::load_from_memory_with_format(source, format).map_err(undecodable)?;
    let resized = resize(&image, width, height, method);
    let (out_width, out_height) = resized.dimensions();
    let mut bytes = Vec::new();
    let content_type = if format == ImageFormat::Jpeg {
        let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, JPEG_QUALITY);
        resized
            .to_rgb8()
            .write_with_encoder(encoder)
            .map_err(|e| MediaError::Internal(format!("encoding a JPEG thumbnail: {e}")))?;
        "image/jpeg"
    } else {
        resized
            .write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png)
            .map_err(|e| MediaError::Internal(format!("encoding a PNG thumbnail: {e}")))?;
        "image/png"
    };
    Ok(Outcome::Thumbnail(Thumbnail {
        bytes,
        content_type,
        width: out_width,
        height: out_height,
    }))
}

/// Scale: fit inside the box keeping the aspect ratio. Crop: cut the largest centred part of
/// the box's aspect ratio, then shrink it to the box. Neither ever enlarges: a crop of an image
/// smaller than the box keeps the box's aspect ratio at the largest size the image allows.
/// Shrinking uses image's area-averaging `thumbnail`, several times faster than a filtered
/// resize at the same quality for downscaling.
fn resize(image: &DynamicImage, width: u32, height: u32, method: Method) -> DynamicImage {
    let (source_width, source_height) = image.dimensions();
    match method {
        Method::Scale => image.thumbnail(width.min(source_width), height.min(source_height)),
        Method::Crop => {
            let (crop_width, crop_height) = aspect_crop(source_width, source_height, width, height);
            let cropped = image.crop_imm(
                (source_width - crop_width) / 2,
                (source_height - crop_height) / 2,
                crop_width,
                crop_height,
            );
            if crop_width > width {
                cropped.thumbnail_exact(width, height)
            } else {
                cropped
            }
        }
    }
}

/// The largest `width:height` rectangle inside a `source_width` x `source_height` image.
fn aspect_crop(source_width: u32, source_height: u32, width: u32, height: u32) -> (u32, u32) {
    let (sw, sh, w, h) = (
        u64::from(source_width),
        u64::from(source_height),
        u64::from(width),
        u64::from(height),
    );
    // Compare sw/sh with w/h without floating point.
    let (crop_width, crop_height) = if sw * h > sh * w {
        (sh * w / h, sh)
    } else {
        (sw, sw * h / w)
    };
    // Both are at most the source's, which are u32.
    (
        u32::try_from(crop_width.max(1)).unwrap_or(source_width),
        u32::try_from(crop_height.max(1)).unwrap_or(source_height),
    )
}

fn is_animated(source: &[u8], format: ImageFormat) -> bool {
    match format {
        ImageFormat::Gif => GifDecoder::new(Cursor::new(source))
            .map(|d| d.into_frames().take(2).count() > 1)
            .unwrap_or(false),
        ImageFormat::Png => PngDecoder::new(Cursor::new(source))
            .and_then(|d| d.is_apng())
            .unwrap_or(false),
        ImageFormat::WebP => WebPDecoder::new(Cursor::new(source))
            .map(|d| d.has_animation())
            .unwrap_or(false),
        _ => false,
    }
}

/// An animated GIF of the resized frames, or `None` when the animation is too long to keep in
/// memory (the caller then makes a still).
fn animated_thumbnail(
    source: &[u8],
    format: ImageFormat,
    width: u32,
    height: u32,
    method: Method,
) -> Result<Option<Thumbnail>, MediaError> {
    let undecodable = |e: image::ImageError| {
        MediaError::CannotThumbnail(format!("Cannot decode the animation: {e}"))
    };
    let frames: Box<dyn Iterator<Item = image::ImageResult<Frame>>> = match format {
        ImageFormat::Gif => Box::new(
            GifDecoder::new(Cursor::new(source))
                .map_err(undecodable)?
                .into_frames(),
        ),
        ImageFormat::Png => Box::new(
            PngDecoder::new(Cursor::new(source))
                .and_then(PngDecoder::apng)
                .map_err(undecodable)?
                .into_frames(),
        ),
        ImageFormat::WebP => Box::new(
            WebPDecoder::new(Cursor::new(source))
                .map_err(undecodable)?
                .into_frames(),
        ),
        _ => return Ok(None),
    };
    let mut resized = Vec::new();
    for frame in frames {
        if resized.len() == MAX_ANIMATION_FRAMES {
            return Ok(None);
        }
        let frame = frame.map_err(undecodable)?;
        let delay = frame.delay();
        let image = DynamicImage::ImageRgba8(frame.into_buffer());
        let image: RgbaImage = resize(&image, width, height, method).to_rgba8();
        resized.push(Frame::from_parts(image, 0, 0, delay));
    }
    let Some(first) = resized.first() else {
        return Ok(None);
    };
    let (out_width, out_height) = first.buffer().dimensions();
    let mut bytes = Vec::new();
    {
        let mut encoder = image::codecs::gif::GifEncoder::new(&mut bytes);
        encoder
            .set_repeat(image::codecs::gif::Repeat::Infinite)
            .and_then(|()| encoder.encode_frames(resized))
            .map_err(|e| MediaError::Internal(format!("encoding a GIF thumbnail: {e}")))?;
    }
    Ok(Some(Thumbnail {
        bytes,
        content_type: "image/gif",
        width: out_width,
        height: out_height,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(width: u32, height: u32) -> Vec<u8> {
        let image = RgbaImage::from_pixel(width, height, image::Rgba([200, 10, 10, 255]));
        let mut bytes = Vec::new();
        DynamicImage::ImageRgba8(image)
            .write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png)
            .unwrap();
        bytes
    }

    fn thumbnail(outcome: Outcome) -> Thumbnail {
        match outcome {
            Outcome::Thumbnail(t) => t,
            Outcome::Original => panic!("expected a thumbnail"),
        }
    }

    #[test]
    fn requests_snap_to_the_default_sizes() {
        assert_eq!(served_size(20, 20, Method::Crop).unwrap(), (32, 32));
        assert_eq!(served_size(20, 30, Method::Crop).unwrap(), (20, 30));
        assert_eq!(served_size(64, 64, Method::Crop).unwrap(), (96, 96));
        assert_eq!(served_size(100, 100, Method::Crop).unwrap(), (100, 100));
        // A crop keeps the requested aspect ratio.
        assert_eq!(served_size(64, 50, Method::Crop).unwrap(), (64, 50));
        assert_eq!(served_size(64, 50, Method::Scale).unwrap(), (320, 240));
        assert_eq!(served_size(300, 300, Method::Scale).unwrap(), (640, 480));
        assert!(served_size(0, 10, Method::Scale).is_err());
        assert!(served_size(5000, 10, Method::Scale).is_err());
    }

    #[test]
    fn crop_and_scale_have_the_requested_bounds() {
        let source = png(1000, 500);
        let crop = thumbnail(generate(&source, 96, 96, Method::Crop, false, u64::MAX).unwrap());
        assert_eq!((crop.width, crop.height), (96, 96));
        let scale = thumbnail(generate(&source, 320, 240, Method::Scale, false, u64::MAX).unwrap());
        assert_eq!((scale.width, scale.height), (320, 160));
        let decoded = image::load_from_memory(&scale.bytes).unwrap();
        assert_eq!(decoded.dimensions(), (320, 160));
    }

    #[test]
    fn never_upscales() {
        let source = png(50, 40);
        assert!(matches!(
            generate(&source, 96, 96, Method::Crop, false, u64::MAX).unwrap(),
            Outcome::Original
        ));
        // Wider than the box in one dimension only: cropped to the box's aspect, not enlarged.
        let source = png(200, 40);
        let crop = thumbnail(generate(&source, 96, 96, Method::Crop, false, u64::MAX).unwrap());
        assert_eq!((crop.width, crop.height), (40, 40));
    }

    #[test]
    fn undecodable_and_huge_images_are_refused() {
        assert!(matches!(
            generate(b"not an image", 32, 32, Method::Crop, false, u64::MAX),
            Err(MediaError::CannotThumbnail(_))
        ));
        assert!(matches!(
            generate(&png(100, 100), 32, 32, Method::Crop, false, 9_999),
            Err(MediaError::TooLarge(_))
        ));
    }

    #[test]
    fn animated_gifs_stay_animated_only_on_request() {
        let frames = (0..3u8).map(|i| {
            Frame::new(RgbaImage::from_pixel(
                200,
                100,
                image::Rgba([i * 80, 0, 0, 255]),
            ))
        });
        let mut gif = Vec::new();
        image::codecs::gif::GifEncoder::new(&mut gif)
            .encode_frames(frames)
            .unwrap();
        let animated = thumbnail(generate(&gif, 96, 96, Method::Crop, true, u64::MAX).unwrap());
        assert_eq!(animated.content_type, "image/gif");
        assert!(is_animated(&animated.bytes, ImageFormat::Gif));
        let still = thumbnail(generate(&gif, 96, 96, Method::Crop, false, u64::MAX).unwrap());
        assert_eq!(still.content_type, "image/png");
        // Even when small enough to be its own thumbnail, an animation is not sent as a still.
        let still = thumbnail(generate(&gif, 320, 240, Method::Scale, false, u64::MAX).unwrap());
        assert_eq!((still.width, still.height), (200, 100));
    }
}
