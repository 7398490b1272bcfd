//! The proxy's one body type ([`Body`]: streamed upstream bodies and the gateway's own
//! answers), and body helpers that keep streaming the default: look at the start of a body
//! without consuming it, and collect a body only up to a bound.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::{BodyExt, Empty, Full, Limited};

use crate::inspection::first_significant_byte;

/// Any error a body may end with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The one body type of the proxy: streamed upstream bodies and the gateway's own answers.
pub type Body = http_body_util::combinators::BoxBody<Bytes, BoxError>;

pub fn full_body(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// An empty body; it allocates nothing (`BoxBody` of a zero-sized body).
pub fn empty_body() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// Frames already read, followed by the rest of the body, still streaming.
pub struct Prefixed<B> {
    prefix: VecDeque<Frame<Bytes>>,
    prefix_len: u64,
    rest: Option<B>,
}

impl<B> Prefixed<B> {
    fn new(prefix: Vec<Frame<Bytes>>, rest: Option<B>) -> Self {
        let prefix_len = prefix
            .iter()
            .filter_map(Frame::data_ref)
            .map(|d| d.len() as u64)
            .sum();
        Prefixed {
            prefix: prefix.into(),
            prefix_len,
            rest,
        }
    }
}

impl<B: HttpBody> Prefixed<B> {
    /// The whole body, when it is one data frame already read and nothing can follow it.
    pub fn into_only_frame(self) -> Result<Bytes, Self> {
        let ended = self.rest.as_ref().is_none_or(HttpBody::is_end_stream);
        match self.prefix.front().and_then(Frame::data_ref) {
            Some(only) if ended && self.prefix.len() == 1 => Ok(only.clone()),
            _ => Err(self),
        }
    }
}

impl<B> HttpBody for Prefixed<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if let Some(frame) = this.prefix.pop_front() {
            if let Some(d) = frame.data_ref() {
                this.prefix_len -= d.len() as u64;
            }
            return Poll::Ready(Some(Ok(frame)));
        }
        match &mut this.rest {
            Some(rest) => Pin::new(rest)
                .poll_frame(cx)
                .map(|o| o.map(|r| r.map_err(Into::into))),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.prefix.is_empty() && self.rest.as_ref().is_none_or(|r| r.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        let rest = match &self.rest {
            Some(r) => r.size_hint(),
            None => SizeHint::with_exact(0),
        };
        let mut hint = SizeHint::new();
        if let Some(u) = rest.upper() {
            hint.set_upper(u.saturating_add(self.prefix_len));
        }
        hint.set_lower(rest.lower().saturating_add(self.prefix_len));
        hint
    }
}

/// Passes a body through and notifies once it has ended (or is known to end), so that a
/// timeout can start when a request has been sent in full.
pub struct NotifyOnEnd<B> {
    inner: B,
    ended: std::sync::Arc<tokio::sync::Notify>,
}

impl<B: HttpBody> NotifyOnEnd<B> {
    pub fn new(inner: B, ended: std::sync::Arc<tokio::sync::Notify>) -> Self {
        if inner.is_end_stream() {
            ended.notify_one();
        }
        NotifyOnEnd { inner, ended }
    }
}

impl<B> HttpBody for NotifyOnEnd<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None) | Poll::Ready(Some(Err(_))))
            || this.inner.is_end_stream()
        {
            this.ended.notify_one();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// What the start of a body looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// The first byte that is not white space.
    Byte(u8),
    /// The body ended with nothing but white space.
    Empty,
    /// More than the allowed white space before anything else.
    TooMuchWhitespace,
}

const BYTE_ORDER_MARK: &[u8] = b"\xEF\xBB\xBF";

/// Reads just enough of `body` to see its first significant byte (after white space and a
/// UTF-8 byte-order mark, even one split across frames).
pub async fn sniff<B>(mut body: B, max_whitespace: usize) -> Result<(Start, Prefixed<B>), BoxError>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    let mut frames = Vec::new();
    let mut seen = 0usize;
    // The body's first bytes while they may still be the start of a byte-order mark.
    let mut lead: Vec<u8> = Vec::with_capacity(BYTE_ORDER_MARK.len());
    let mut past_lead = false;
    loop {
        let Some(frame) = body.frame().await else {
            return Ok((Start::Empty, Prefixed::new(frames, None)));
        };
        let frame = frame.map_err(Into::into)?;
        let found = frame.data_ref().and_then(|d| {
            seen += d.len();
            if past_lead {
                return first_significant_byte(d);
            }
            let take = (BYTE_ORDER_MARK.len() - lead.len()).min(d.len());
            let (head, rest) = d.split_at(take);
            lead.extend_from_slice(head);
            if lead.len() < BYTE_ORDER_MARK.len() && BYTE_ORDER_MARK.starts_with(&lead) {
                return None; // maybe a mark: wait for the next frame
            }
            past_lead = true;
            let lead = lead.strip_prefix(BYTE_ORDER_MARK).unwrap_or(&lead);
            lead.iter()
                .chain(rest)
                .copied()
                .find(|b| !b.is_ascii_whitespace())
        });
        frames.push(frame);
        if let Some(b) = found {
            return Ok((Start::Byte(b), Prefixed::new(frames, Some(body))));
        }
        if seen > max_whitespace {
            return Ok((Start::TooMuchWhitespace, Prefixed::new(frames, Some(body))));
        }
    }
}

/// Why a body could not be collected.
#[derive(Debug)]
pub enum CollectError {
    TooLarge,
    Body(BoxError),
}

/// Collects a whole body of at most `limit` bytes (trailers are dropped).
pub async fn collect_limited<B>(body: B, limit: usize) -> Result<Bytes, CollectError>
where
    B: HttpBody<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    match Limited::new(body, limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) => {
            if e.is::<http_body_util::LengthLimitError>() {
                Err(CollectError::TooLarge)
            } else {
                Err(CollectError::Body(e))
            }
        }
    }
}

/// Reads up to `limit` bytes. If the body ends within them, returns a copy of it; either way
/// returns a body that replays what was read and streams the rest.
pub async fn copy_if_small<B>(
    mut body: B,
    limit: usize,
) -> Result<(Option<Bytes>, Prefixed<B>), BoxError>
where
    B: HttpBody<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    let mut frames = Vec::new();
    let mut len = 0usize;
    loop {
        if body.is_end_stream() {
            return Ok((Some(joined(&frames, len)), Prefixed::new(frames, None)));
        }
        let Some(frame) = body.frame().await else {
            return Ok((Some(joined(&frames, len)), Prefixed::new(frames, None)));
        };
        let frame = frame.map_err(Into::into)?;
        if let Some(d) = frame.data_ref() {
            len = len.saturating_add(d.len());
        }
        frames.push(frame);
        if len > limit {
            return Ok((None, Prefixed::new(frames, Some(body))));
        }
    }
}

/// The data of `frames` (`len` bytes) as one buffer: a single frame's own bytes, shared
/// rather than copied, or the frames joined.
fn joined(frames: &[Frame<Bytes>], len: usize) -> Bytes {
    let mut data = frames.iter().filter_map(Frame::data_ref);
    match (data.next(), data.next()) {
        (None, _) => Bytes::new(),
        (Some(only), None) => only.clone(),
        _ => {
            let mut copy = BytesMut::with_capacity(len);
            for d in frames.iter().filter_map(Frame::data_ref) {
                copy.extend_from_slice(d);
            }
            copy.freeze()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Full;

    #[tokio::test]
    async fn sniff_replays_everything() {
        let body = Full::new(Bytes::from_static(b"  \n{\"a\":1}"));
        let (start, rest) = sniff(body, 1024).await.expect("sniff");
        assert_eq!(start, Start::Byte(b'{'));
        let all = collect_limited(rest, 100).await.expect("collect");
        assert_eq!(&all[..], b"  \n{\"a\":1}");
    }

    #[tokio::test]
    async fn only_a_whole_body_in_one_frame_is_taken_as_is() {
        let (_, rest) = sniff(Full::new(Bytes::from_static(b"{\"a\":1}")), 1024)
            .await
            .expect("sniff");
        assert_eq!(
            rest.into_only_frame().ok().as_deref(),
            Some(&b"{\"a\":1}"[..])
        );
        let frames = [&b"{\"a\""[..], b":1}"].map(Bytes::from_static).into();
        let (_, rest) = sniff(Frames(frames), 1024).await.expect("sniff");
        let rest = rest.into_only_frame().expect_err("more frames follow");
        assert_eq!(
            &collect_limited(rest, 100).await.expect("c")[..],
            b"{\"a\":1}"
        );
    }

    #[tokio::test]
    async fn sniff_empty_and_whitespace_bound() {
        let (start, _) = sniff(Full::new(Bytes::from_static(b"   ")), 1024)
            .await
            .expect("s");
        assert_eq!(start, Start::Empty);
        let (start, _) = sniff(Full::new(Bytes::from(vec![b' '; 2000])), 1024)
            .await
            .expect("s");
        assert_eq!(start, Start::TooMuchWhitespace);
    }

    /// A body that yields the given data frames one by one.
    struct Frames(VecDeque<Bytes>);

    impl HttpBody for Frames {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            Poll::Ready(self.get_mut().0.pop_front().map(|d| Ok(Frame::data(d))))
        }
    }

    #[tokio::test]
    async fn sniff_sees_past_a_byte_order_mark_split_across_frames() {
        let data = b"\xEF\xBB\xBF {\"a\":1}";
        for split in [&[1usize, 1][..], &[2], &[1], &[3], &[0, 2]] {
            let mut frames = VecDeque::new();
            let mut at = 0;
            for n in split {
                frames.push_back(Bytes::copy_from_slice(&data[at..at + n]));
                at += n;
            }
            frames.push_back(Bytes::copy_from_slice(&data[at..]));
            let (start, rest) = sniff(Frames(frames), 1024).await.expect("sniff");
            assert_eq!(start, Start::Byte(b'{'), "split {split:?}");
            assert_eq!(&collect_limited(rest, 100).await.expect("c")[..], data);
        }
        // Not a mark after all: its first byte is what the body starts with.
        let frames = [&b"\xEF"[..], b"\xBBx"].map(Bytes::from_static).into();
        let (start, _) = sniff(Frames(frames), 1024).await.expect("s");
        assert_eq!(start, Start::Byte(0xEF));
    }

    #[tokio::test]
    async fn collect_limit_is_enforced() {
        let r = collect_limited(Full::new(Bytes::from(vec![b'x'; 101])), 100).await;
        assert!(matches!(r, Err(CollectError::TooLarge)));
    }

    #[tokio::test]
    async fn copy_if_small_keeps_big_bodies_streaming() {
        let (copy, rest) = copy_if_small(Full::new(Bytes::from_static(b"identifier=a")), 64)
            .await
            .expect("copy");
        assert_eq!(copy.as_deref(), Some(&b"identifier=a"[..]));
        assert_eq!(rest.size_hint().exact(), Some(12));
        let frames = [&b"identifier"[..], b"", b"=a"]
            .map(Bytes::from_static)
            .into();
        let (copy, rest) = copy_if_small(Frames(frames), 64).await.expect("copy");
        assert_eq!(copy.as_deref(), Some(&b"identifier=a"[..]));
        assert_eq!(
            &collect_limited(rest, 64).await.expect("c")[..],
            b"identifier=a"
        );
        let big = vec![b'x'; 1000];
        let (copy, rest) = copy_if_small(Full::new(Bytes::from(big)), 64)
            .await
            .expect("copy");
        assert!(copy.is_none());
        assert_eq!(collect_limited(rest, 2000).await.expect("c").len(), 1000);
    }
}
