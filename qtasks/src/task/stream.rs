//! Stream tasks: collecting the items of a task that returns a stream or
//! an iterator, and applying its `map` handler to each.

use super::TaskError;

/// Collects the items of a stream task's stream, passing each through
/// `each` (which checks a `Result` item and applies the `map` handler) as
/// it arrives; the first error ends the task. Dropping the future (cancel,
/// time limit) drops the stream.
pub async fn collect_stream<S, U, F, Fut>(stream: S, mut each: F) -> Result<Vec<U>, TaskError>
where
    S: futures::Stream,
    F: FnMut(S::Item) -> Fut,
    Fut: std::future::Future<Output = Result<U, TaskError>>,
{
    use futures::StreamExt as _;
    let mut stream = std::pin::pin!(stream);
    let mut items = Vec::new();
    while let Some(item) = stream.next().await {
        items.push(each(item).await?);
    }
    Ok(items)
}

/// Where the blocking half of an iterator task sends its items.
pub struct ItemSink<T> {
    tx: tokio::sync::mpsc::Sender<T>,
    cancel: super::CancelToken,
}

impl<T> ItemSink<T> {
    /// Sends one item, waiting while the channel is full. `false`: stop
    /// iterating (the task was cancelled, or its run was dropped at its
    /// time limit or after an error).
    pub fn send(&self, item: T) -> bool {
        !self.cancel.is_cancelled() && self.tx.blocking_send(item).is_ok()
    }
}

/// Runs an iterator task: `produce` iterates on the blocking pool (with
/// `ctx` as [`TaskContext::current`](super::TaskContext::current)) and sends
/// each item to `sink`; the items are passed through `each` on the async
/// side as they arrive. The task's cancellation ends the collection at
/// once, and the iterator stops before its next item; a panic in the
/// iterator becomes an error.
pub async fn collect_blocking<T, P, U, F, Fut>(
    ctx: super::TaskContext,
    produce: P,
    mut each: F,
) -> Result<Vec<U>, TaskError>
where
    T: Send + 'static,
    P: FnOnce(super::TaskContext, &ItemSink<T>) + Send + 'static,
    F: FnMut(T) -> Fut,
    Fut: std::future::Future<Output = Result<U, TaskError>>,
{
    const BUFFERED: usize = 32;
    let cancel = ctx.cancellation().clone();
    let (tx, mut rx) = tokio::sync::mpsc::channel(BUFFERED);
    let sink = ItemSink { tx, cancel: cancel.clone() };
    let span = tracing::Span::current();
    let thread = ctx.enter_thread();
    let producer = tokio::task::spawn_blocking(move || {
        let _thread = thread;
        super::TaskContext::sync_scope(Some(ctx.clone()), || span.in_scope(|| produce(ctx, &sink)))
    });
    let collect = async {
        let mut items = Vec::new();
        while let Some(item) = rx.recv().await {
            items.push(each(item).await?);
        }
        Ok::<_, TaskError>(items)
    };
    let items = cancel.run_until_cancelled(collect).await.map_err(TaskError::Cancelled)??;
    match producer.await {
        Ok(()) => Ok(items),
        Err(e) if e.is_panic() => Err(TaskError::from_panic(e.into_panic())),
        Err(e) => Err(TaskError::msg(format!("blocking iterator did not finish: {e}"))),
    }
}

/// What a stream task's `map` handler returned, to be awaited if it is a
/// future and taken as it is otherwise: `(&&Mapped::new(v)).__qtasks_mapped()`
/// picks [`MapFuture`] for a future and [`MapValue`] for anything else
/// (autoref specialization; the types are concrete where `#[task]` uses it).
pub struct Mapped<T>(std::cell::Cell<Option<T>>);

impl<T> Mapped<T> {
    /// Wraps a handler's return value.
    pub fn new(value: T) -> Self {
        Self(std::cell::Cell::new(Some(value)))
    }

    fn take(&self) -> T {
        self.0.take().expect("a mapped value is taken once")
    }
}

/// What a stream task's `map` handler returns must be the result's item
/// type: the item type, or the one `map_item` names.
#[diagnostic::on_unimplemented(
    message = "the `map` handler returns `{Self}`, but the task's result holds `{T}`",
    label = "returns `{Self}`",
    note = "if the handler changes the item type, name the new one: `#[task(map = handler, map_item = {Self})]`"
)]
pub trait MapsTo<T> {
    /// The value, as the result's item.
    fn __qtasks_item(self) -> T;
}

impl<T> MapsTo<T> for T {
    #[inline(always)]
    fn __qtasks_item(self) -> T {
        self
    }
}

/// A `map` handler's value as the result's item (see [`MapsTo`]).
#[inline(always)]
pub fn mapped_item<T, V: MapsTo<T>>(value: V) -> T {
    value.__qtasks_item()
}

/// A `map` handler that returned a future (an `async fn`): await it.
pub trait MapFuture {
    /// The handler's future.
    type Future: std::future::Future;
    /// The future to await.
    fn __qtasks_mapped(&self) -> Self::Future;
}

impl<F: std::future::Future> MapFuture for &Mapped<F> {
    type Future = F;
    fn __qtasks_mapped(&self) -> F {
        self.take()
    }
}

/// A `map` handler that returned a value (a sync `fn`).
pub trait MapValue {
    /// The value.
    type Value;
    /// The value, as a ready future.
    fn __qtasks_mapped(&self) -> std::future::Ready<Self::Value>;
}

impl<T> MapValue for Mapped<T> {
    type Value = T;
    fn __qtasks_mapped(&self) -> std::future::Ready<T> {
        std::future::ready(self.take())
    }
}
