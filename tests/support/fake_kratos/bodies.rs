//! Streamed response bodies: generated chunks, a body cut short, an upload echoed back from
//! memory and a spill file, and gzip on the fly.

use std::future::Future;
use std::io::{self, Write as _};
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use tokio::io::{AsyncRead, ReadBuf};

pub(super) type FakeBody = UnsyncBoxBody<Bytes, io::Error>;

pub(super) struct ChunkBody {
    pub(super) remaining: u64,
    pub(super) chunk: Bytes,
    pub(super) interval: Option<Duration>,
    pub(super) sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    pub(super) started: bool,
    pub(super) exact_len: Option<u64>,
}

impl Body for ChunkBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        if this.remaining == 0 || this.chunk.is_empty() {
            return Poll::Ready(None);
        }
        if let (Some(interval), true) = (this.interval, this.started) {
            let sleep = this
                .sleep
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(interval)));
            ready!(sleep.as_mut().poll(cx));
            this.sleep = None;
        }
        this.started = true;
        this.remaining -= 1;
        Poll::Ready(Some(Ok(Frame::data(this.chunk.clone()))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0 || self.chunk.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        match self.exact_len {
            Some(len) => SizeHint::with_exact(len),
            None => SizeHint::default(),
        }
    }
}

/// A body that sends its first part, pauses (so the part is flushed), then fails, which
/// makes hyper drop the connection short of the announced length.
pub(super) struct BrokenBody {
    pub(super) total: u64,
    pub(super) part: Option<Bytes>,
    pub(super) stall: Duration,
    pub(super) pause: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Body for BrokenBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        if let Some(part) = this.part.take() {
            if !part.is_empty() {
                return Poll::Ready(Some(Ok(Frame::data(part))));
            }
        }
        let stall = this.stall;
        let pause = this
            .pause
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(stall)));
        ready!(pause.as_mut().poll(cx));
        Poll::Ready(Some(Err(io::Error::new(
            io::ErrorKind::ConnectionReset,
            "fake kratos: connection dropped mid-body (break_after)",
        ))))
    }

    fn is_end_stream(&self) -> bool {
        false
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.total)
    }
}

pub(super) struct EchoBody {
    pub(super) prefix: Option<Bytes>,
    pub(super) file: Option<tokio::fs::File>,
    pub(super) buf: Box<[u8]>,
    pub(super) exact_len: Option<u64>,
}

impl Body for EchoBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        if let Some(prefix) = this.prefix.take() {
            if !prefix.is_empty() {
                return Poll::Ready(Some(Ok(Frame::data(prefix))));
            }
        }
        let Some(file) = this.file.as_mut() else {
            return Poll::Ready(None);
        };
        let mut read_buf = ReadBuf::new(&mut this.buf);
        ready!(Pin::new(file).poll_read(cx, &mut read_buf))?;
        if read_buf.filled().is_empty() {
            this.file = None;
            return Poll::Ready(None);
        }
        Poll::Ready(Some(Ok(Frame::data(Bytes::copy_from_slice(
            read_buf.filled(),
        )))))
    }

    fn is_end_stream(&self) -> bool {
        self.file.is_none() && self.prefix.as_ref().is_none_or(Bytes::is_empty)
    }

    fn size_hint(&self) -> SizeHint {
        match self.exact_len {
            Some(len) => SizeHint::with_exact(len),
            None => SizeHint::default(),
        }
    }
}

pub(super) struct GzipBody {
    pub(super) inner: FakeBody,
    pub(super) encoder: Option<flate2::write::GzEncoder<Vec<u8>>>,
}

impl GzipBody {
    pub(super) fn new(inner: FakeBody) -> GzipBody {
        GzipBody {
            inner,
            encoder: Some(flate2::write::GzEncoder::new(
                Vec::new(),
                flate2::Compression::default(),
            )),
        }
    }
}

impl Body for GzipBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        loop {
            let Some(encoder) = this.encoder.as_mut() else {
                return Poll::Ready(None);
            };
            match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Ok(frame)) => {
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    encoder.write_all(&data)?;
                    let out = std::mem::take(encoder.get_mut());
                    if !out.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))));
                    }
                }
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                None => {
                    let encoder = this.encoder.take().expect("checked above");
                    let out = encoder.finish()?;
                    return Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.encoder.is_none()
    }
}
