//! Connection hygiene of the HTTPS listeners: what one client may cost.
//!
//! - [`PerAddress`] counts the open connections of each client address
//!   (an IPv6 client by its /64, an IPv4-mapped one as IPv4); a connection
//!   beyond [`MAX_PER_ADDRESS`] is closed as soon as it is accepted.
//! - [`TimedBody`] is a request body that must keep up a minimum rate:
//!   it fails once [`BODY_GRACE`] has passed and fewer than
//!   [`MIN_BODY_RATE`] bytes per second (counted from the end of the
//!   grace period) have arrived, and says so through a flag the connection
//!   reads to answer 408.
//! - [`announced_too_large`]: a `Content-Length` over the listener's limit
//!   is refused before a byte of the body is read.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper::body::{Body, Bytes, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::error::ApiError;

/// Connections one client address (IPv6: one /64) may have open on one
/// service at once.
pub const MAX_PER_ADDRESS: usize = 32;
/// How long any request body may take, however small.
pub const BODY_GRACE: Duration = Duration::from_secs(10);
/// After [`BODY_GRACE`], the least rate (bytes per second) at which a
/// body must have arrived so far.
pub const MIN_BODY_RATE: u64 = 1024;

/// The open connections per client address of one service.
#[derive(Debug)]
pub(crate) struct PerAddress {
    max: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One admitted connection; counted until dropped.
#[derive(Debug)]
pub(crate) struct AddressPermit {
    table: Arc<PerAddress>,
    key: IpAddr,
}

impl PerAddress {
    pub(crate) fn new(max: usize) -> Arc<PerAddress> {
        Arc::new(PerAddress {
            max,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// A permit for one more connection from `client`, unless its address
    /// has [`MAX_PER_ADDRESS`] open already.
    pub(crate) fn admit(self: &Arc<Self>, client: IpAddr) -> Option<AddressPermit> {
        let key = address_key(client);
        let mut open = self.lock();
        let count = open.entry(key).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(AddressPermit {
            table: self.clone(),
            key,
        })
    }

    /// Addresses with a connection open (the table holds no others).
    #[cfg(test)]
    fn addresses(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for AddressPermit {
    fn drop(&mut self) {
        let mut open = self.table.lock();
        if let Some(count) = open.get_mut(&self.key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                // Nothing is kept for an address without connections, so the
                // table never holds more entries than there are connections.
                open.remove(&self.key);
            }
        }
    }
}

/// What counts as one client: an IPv4 address (also when it arrives
/// mapped into IPv6 on a dual-stack socket), an IPv6 /64 (one host's
/// privacy addresses, one customer's prefix).
pub(crate) fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & (u128::MAX << 64);
                IpAddr::V6(Ipv6Addr::from(prefix))
            }
        },
    }
}

/// The body of one request, failing when it is slower than allowed.
pub(crate) struct TimedBody<B> {
    inner: B,
    started: Instant,
    received: u64,
    deadline: Pin<Box<Sleep>>,
    expired: Arc<AtomicBool>,
}

/// A request extension: whether the request's body missed its deadline
/// (then its answer is replaced by 408, and it is not audited: it was
/// refused before it could change anything).
#[derive(Debug, Clone)]
pub struct BodyDeadline(pub(crate) Arc<AtomicBool>);

impl BodyDeadline {
    /// The body did not arrive in time.
    pub fn passed(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// The body stopped arriving fast enough.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
pub(crate) struct BodyTimeout;

impl<B> TimedBody<B> {
    /// `inner`, timed from now; `expired` is set when it times out.
    pub(crate) fn new(inner: B, expired: Arc<AtomicBool>) -> Self {
        let started = Instant::now();
        TimedBody {
            inner,
            started,
            received: 0,
            deadline: Box::pin(tokio::time::sleep_until(started + BODY_GRACE)),
            expired,
        }
    }

    /// The grace period, plus a second for every [`MIN_BODY_RATE`] bytes
    /// received.
    fn deadline(&self) -> Instant {
        let earned = Duration::from_millis(self.received.saturating_mul(1000) / MIN_BODY_RATE);
        self.started + BODY_GRACE + earned
    }
}

impl<B> Body for TimedBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.received += data.len() as u64;
                    let deadline = this.deadline();
                    this.deadline.as_mut().reset(deadline);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match this.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    this.expired.store(true, Ordering::Relaxed);
                    Poll::Ready(Some(Err(Box::new(BodyTimeout))))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The request's announced `Content-Length`, when it is over `limit`.
pub(crate) fn announced_too_large(headers: &axum::http::HeaderMap, limit: usize) -> Option<u64> {
    let announced: u64 = headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    (announced > limit as u64).then_some(announced)
}

/// 413, before the body is read; the connection closes (the body is not
/// read, so the connection cannot carry another request).
pub(crate) fn too_large(limit: usize) -> Response {
    closing(ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too-large",
        format!(
            "the request announces a body larger than {limit} bytes, the most this service reads"
        ),
        "uploads are at most 1 MiB (account files 2 MiB)",
    ))
}

/// 408 for a body that did not arrive in time; the connection closes.
pub(crate) fn body_timeout() -> Response {
    closing(ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        "body-timeout",
        format!(
            "the request body did not arrive in time: within {} s, or at least {} bytes per second after that",
            BODY_GRACE.as_secs(),
            MIN_BODY_RATE
        ),
        "send the whole body promptly, and as much as its Content-Length announces",
    ))
}

fn closing(error: ApiError) -> Response {
    let mut response = error.into_response();
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("an address")
    }

    #[test]
    fn clients_are_counted_by_ipv4_address_and_ipv6_prefix() {
        assert_eq!(address_key(ip("192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(address_key(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(
            address_key(ip("2001:db8:1:2:aaaa::1")),
            ip("2001:db8:1:2::")
        );
        assert_eq!(
            address_key(ip("2001:db8:1:2:ffff:ffff:ffff:ffff")),
            address_key(ip("2001:db8:1:2::9"))
        );
        assert_ne!(
            address_key(ip("2001:db8:1:3::1")),
            address_key(ip("2001:db8:1:2::1"))
        );
    }

    #[test]
    fn an_address_gets_its_limit_others_are_not_affected_and_nothing_is_kept() {
        let table = PerAddress::new(2);
        let a1 = table.admit(ip("192.0.2.1")).expect("first");
        let a2 = table.admit(ip("::ffff:192.0.2.1")).expect("second");
        assert!(table.admit(ip("192.0.2.1")).is_none(), "over the limit");
        let b = table.admit(ip("192.0.2.2")).expect("another address");
        drop(a1);
        let a3 = table.admit(ip("192.0.2.1")).expect("room again");
        drop((a2, a3, b));
        assert_eq!(table.addresses(), 0);
    }

    #[test]
    fn content_length_over_the_limit_is_seen_in_the_headers() {
        let mut headers = axum::http::HeaderMap::new();
        assert_eq!(announced_too_large(&headers, 10), None);
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("10"));
        assert_eq!(announced_too_large(&headers, 10), None);
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("11"));
        assert_eq!(announced_too_large(&headers, 10), Some(11));
    }
}
