//! The leaf of the error types: [`BoxError`] and panic messages. The
//! app's own errors ([`Error`](crate::Error), [`WaitError`](crate::WaitError))
//! are in `app/error.rs`, above the layers they wrap.

/// A boxed error, as returned by failing handlers, plugin starts and
/// dependency providers.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The message of a panic payload (`panic!` with a literal or a format).
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}
