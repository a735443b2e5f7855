//! `/api/graph/stream`: the traffic graph as Server-Sent Events, one `data:` event per second.
//!
//! Every client reads the graph's shared feed (one snapshot per second for all of them, made on
//! a blocking thread); the first event is the latest snapshot, sent at once so a page has
//! something to draw before the next tick (or the feed's first, when it has just started).

use std::convert::Infallible;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use sluice_telemetry::Telemetry;

use crate::AdminBody;

/// The SSE response for one client.
pub(crate) fn stream(telemetry: &Telemetry) -> Response<AdminBody> {
    let rx = telemetry.graph().subscribe();
    let events = futures_util::stream::unfold((rx, true), |(mut rx, first)| async move {
        // The first event is the latest snapshot, or the first one made (the feed starts empty).
        let wait = !first || rx.borrow().is_empty();
        if wait && rx.changed().await.is_err() {
            // The feed ended (telemetry dropped): end the stream.
            return None;
        }
        let json = rx.borrow_and_update().clone();
        let event = Bytes::from(format!("data: {json}\n\n"));
        Some((Ok::<_, Infallible>(Frame::data(event)), (rx, false)))
    });
    let mut r = Response::new(StreamBody::new(events).boxed_unsync());
    *r.status_mut() = StatusCode::OK;
    let h = r.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/event-stream"),
    );
    h.insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-cache"),
    );
    r
}
