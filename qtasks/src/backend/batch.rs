//! Writing in batches: the ends of tasks (and any other write that many
//! tasks make at once) go to one task per backend, which writes whatever
//! has arrived together. A write that comes alone goes out at once, alone;
//! under load the batches grow by themselves while earlier ones are being
//! written. Used by the Redis and Postgres backends for their finishes.

use std::future::Future;
use std::sync::{Arc, Mutex};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;

/// The queue of a batching task, started on first use and restarted if it
/// stopped (its runtime shut down, say).
pub(crate) struct Batcher<T> {
    slot: Mutex<Option<(mpsc::UnboundedSender<T>, JoinHandle<()>)>>,
}

impl<T> Default for Batcher<T> {
    fn default() -> Self {
        Self { slot: Mutex::new(None) }
    }
}

impl<T: Send + 'static> Batcher<T> {
    /// The sender to the batching task, started with `start` (given the
    /// receiving end) if it is not running.
    pub(crate) fn sender(
        &self,
        start: impl FnOnce(mpsc::UnboundedReceiver<T>) -> JoinHandle<()>,
    ) -> mpsc::UnboundedSender<T> {
        let mut slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((sender, task)) = slot.as_ref()
            && !sender.is_closed()
            && !task.is_finished()
        {
            return sender.clone();
        }
        let (sender, receiver) = mpsc::unbounded_channel();
        *slot = Some((sender.clone(), start(receiver)));
        sender
    }
}

impl<T> Drop for Batcher<T> {
    fn drop(&mut self) {
        // Batches being written finish; what waits in the queue is dropped,
        // which its senders see as the batching task having stopped.
        if let Some((_, task)) = self.slot.get_mut().unwrap_or_else(|e| e.into_inner()).take() {
            task.abort();
        }
    }
}

/// Takes what arrives on `receiver` in batches of up to `most` and hands
/// each to `write` in a task of its own, with up to `in_flight` batches
/// being written at once. A free writer is waited for first, so what
/// arrives meanwhile joins the next batch. Returns when every sender is gone.
pub(crate) async fn write_batches<T, W, F>(
    mut receiver: mpsc::UnboundedReceiver<T>,
    most: usize,
    in_flight: usize,
    write: W,
) where
    T: Send + 'static,
    W: Fn(Vec<T>) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let writers = Arc::new(Semaphore::new(in_flight));
    loop {
        let Ok(permit) = Arc::clone(&writers).acquire_owned().await else { return };
        let mut batch = Vec::with_capacity(most);
        if receiver.recv_many(&mut batch, most).await == 0 {
            return;
        }
        let written = write(batch);
        tokio::spawn(async move {
            written.await;
            drop(permit);
        });
    }
}
