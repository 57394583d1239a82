//! Traces from the producer to the worker: the W3C trace context of the
//! code that enqueued a task travels with the task.
//!
//! A task carries its trace context in two extra fields of its record,
//! [`TRACEPARENT`] and [`TRACESTATE`], named and formatted as the W3C Trace
//! Context headers. As extra fields they are stored by every backend
//! without the backend knowing them, a record without them reads as it did
//! before, and a client in another language sets them as plain JSON
//! (`"extra": {"traceparent": "00-…-…-01"}`).
//!
//! # Without the `opentelemetry` feature
//!
//! qtasks carries the traceparent a caller sets; the one way to set it is
//! [`Signature::traceparent`] (and [`Signature::tracestate`]), the same on
//! [`Enqueue`]. Typically it is the `traceparent` header of the request
//! that led to the task:
//!
//! ```
//! # use qtasks::{QueueTasks, TaskContext, task};
//! # use std::time::Duration;
//! #[task]
//! async fn report(ctx: TaskContext) -> Option<String> {
//!     ctx.traceparent().map(str::to_owned)
//! }
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let app = QueueTasks::builder("trace-doc").task::<Report>().build()?;
//! # let worker = app.worker().start().await?;
//! let header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
//! let handle = app.enqueue(Report::call()).traceparent(header).await?;
//! assert_eq!(handle.result(Duration::from_secs(5)).await?.as_deref(), Some(header));
//! # worker.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! The worker records it as the `traceparent` field of the task's `task`
//! span, so a log line of the task can be matched with the producer's
//! trace; the task reads it with [`TaskContext::traceparent`], and a
//! record shows it with [`TaskRecord::traceparent`].
//!
//! # With the `opentelemetry` feature
//!
//! The same fields are wired to [`tracing-opentelemetry`]:
//!
//! - An enqueue that sets no traceparent itself injects the OpenTelemetry
//!   context of the span current while the enqueue runs (the W3C
//!   `TraceContextPropagator`): instrument the code that awaits the enqueue
//!   (`#[tracing::instrument]`, or `.instrument(span)`). No span, or no
//!   OpenTelemetry layer in the subscriber: nothing is injected.
//! - The worker's `task` span takes the extracted context as its parent, so
//!   the task's span (and every span under it) belongs to the producer's
//!   trace, as a child of the span that enqueued it.
//!
//! The worker needs a subscriber with a `tracing_opentelemetry` layer for
//! its spans to be exported, as any traced program does.
//!
//! # Rules
//!
//! - A traceparent set on the call wins over the current span's context.
//! - It is checked when the task is enqueued: one that is not a W3C
//!   traceparent (`version-traceid-parentid-flags`, lowercase hex, ids not
//!   all zeros) fails the enqueue with [`Error::InvalidTraceparent`] and
//!   nothing is stored. A tracestate without a traceparent is ignored.
//! - A retry carries the context of the attempt it replaces, so every
//!   attempt is a child of the producer's span. A chain step or a group
//!   member is enqueued by the client as any task is, so it carries the
//!   context current when the client enqueues it.
//! - A task without a traceparent costs the worker one lookup in its extra
//!   fields, which are empty for most tasks: no allocation.
//!
//! [`Signature::traceparent`]: crate::Signature::traceparent
//! [`Signature::tracestate`]: crate::Signature::tracestate
//! [`Enqueue`]: crate::Enqueue::traceparent
//! [`TaskContext::traceparent`]: crate::TaskContext::traceparent
//! [`TaskRecord::traceparent`]: crate::TaskRecord::traceparent
//! [`Error::InvalidTraceparent`]: crate::Error::InvalidTraceparent
//! [`tracing-opentelemetry`]: https://docs.rs/tracing-opentelemetry

use serde_json::{Map, Value};

/// The extra field that holds a task's W3C `traceparent`
/// (`00-<trace id>-<parent span id>-<flags>`).
pub const TRACEPARENT: &str = "traceparent";

/// The extra field that holds a task's W3C `tracestate` (vendor entries
/// that travel with the traceparent), if any.
pub const TRACESTATE: &str = "tracestate";

/// `true` if `value` is a W3C traceparent: `version-traceid-parentid-flags`
/// in lowercase hex, version not `ff`, ids not all zeros, and nothing after
/// the flags for version `00` (a later version may add `-…` fields).
pub(crate) fn is_valid_traceparent(value: &str) -> bool {
    let b = value.as_bytes();
    let hex = |range: std::ops::Range<usize>| b[range].iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'));
    let zeros = |range: std::ops::Range<usize>| b[range].iter().all(|&c| c == b'0');
    if b.len() < 55 || b[2] != b'-' || b[35] != b'-' || b[52] != b'-' {
        return false;
    }
    if !(hex(0..2) && hex(3..35) && hex(36..52) && hex(53..55)) || &b[0..2] == b"ff" {
        return false;
    }
    if zeros(3..35) || zeros(36..52) {
        return false;
    }
    match &b[0..2] {
        b"00" => b.len() == 55,
        _ => b.len() == 55 || b[55] == b'-',
    }
}

/// The traceparent among a task's extra fields, if it has one (a lookup in
/// a map that is usually empty; no allocation).
#[inline]
pub(crate) fn traceparent(extra: &Map<String, Value>) -> Option<&str> {
    extra.get(TRACEPARENT)?.as_str()
}

/// The tracestate among a task's extra fields, if it has one.
#[inline]
pub(crate) fn tracestate(extra: &Map<String, Value>) -> Option<&str> {
    extra.get(TRACESTATE)?.as_str()
}

#[cfg(feature = "opentelemetry")]
pub(crate) use otel::{inject_current, set_parent};

/// Without the `opentelemetry` feature there is no current context to
/// inject: the call's own traceparent, if any, is all a task carries.
#[cfg(not(feature = "opentelemetry"))]
#[inline(always)]
pub(crate) fn inject_current(_extra: &mut Map<String, Value>) {}

/// Without the `opentelemetry` feature the task span has no OpenTelemetry
/// parent to set: its `traceparent` field is the link.
#[cfg(not(feature = "opentelemetry"))]
#[inline(always)]
pub(crate) fn set_parent(_span: &tracing::Span, _extra: &Map<String, Value>) {}

/// The `opentelemetry` feature: inject on enqueue, extract on the worker.
#[cfg(feature = "opentelemetry")]
mod otel {
    use super::{Map, TRACEPARENT, TRACESTATE, Value};
    use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
    use opentelemetry_sdk::propagation::TraceContextPropagator;
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    /// A task's extra fields as a carrier the propagator writes to.
    struct Writer<'a>(&'a mut Map<String, Value>);

    impl Injector for Writer<'_> {
        fn set(&mut self, key: &str, value: String) {
            self.0.insert(key.to_owned(), Value::String(value));
        }
    }

    /// A task's extra fields as a carrier the propagator reads from.
    struct Reader<'a>(&'a Map<String, Value>);

    impl Extractor for Reader<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            self.0.get(key)?.as_str()
        }

        fn keys(&self) -> Vec<&str> {
            [TRACEPARENT, TRACESTATE].into_iter().filter(|key| self.0.contains_key(*key)).collect()
        }
    }

    /// Writes the OpenTelemetry context of the current span into `extra`,
    /// unless the call set a traceparent itself. Nothing when the current
    /// span has no valid context (no span, no OpenTelemetry layer).
    pub(crate) fn inject_current(extra: &mut Map<String, Value>) {
        if extra.contains_key(TRACEPARENT) {
            return;
        }
        let cx = tracing::Span::current().context();
        TraceContextPropagator::new().inject_context(&cx, &mut Writer(extra));
    }

    /// Makes the context in `extra` the OpenTelemetry parent of `span`, a
    /// task span not yet entered. Without an OpenTelemetry layer, or for a
    /// disabled span, there is nothing to continue and nothing happens.
    pub(crate) fn set_parent(span: &tracing::Span, extra: &Map<String, Value>) {
        let cx = TraceContextPropagator::new().extract(&Reader(extra));
        if let Err(error) = span.set_parent(cx) {
            tracing::trace!(%error, "the task span does not continue the producer's trace");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_valid_traceparent;

    #[test]
    fn w3c_traceparents_are_told_from_others() {
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert!(is_valid_traceparent(good));
        assert!(is_valid_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-later"));
        assert!(is_valid_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"));
        for bad in [
            "",
            "not a traceparent",
            &good[..54],
            &format!("{good}-x"),
            &good.to_uppercase(),
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00x",
            "00-4bf92f3577b34da6a3ce929d0e0e47é-00f067aa0ba902b7-01",
        ] {
            assert!(!is_valid_traceparent(bad), "{bad:?} passed");
        }
    }
}
