//! [`app!`](crate::app!): naming an app's type, with its task names checked
//! by `cargo check`.

/// Names an app's type: its tasks and plugins, without writing the tuple
/// and `Member` types the builder infers, and checks its task names when
/// `cargo check` (and so rust-analyzer) runs.
///
/// ```
/// use qtasks::{QueueTasks, task};
///
/// #[task]
/// async fn add(a: i64, b: i64) -> i64 {
///     a + b
/// }
///
/// #[task]
/// async fn ping() {}
///
/// #[qtasks::plugin(on = "worker_start")]
/// fn announce(_ctx: &qtasks::triggers::WorkerStart<'_>) {}
///
/// qtasks::app! {
///     /// The demo app: two tasks and one plugin, on any backend
///     /// (`Demo` alone is the in-memory one).
///     pub type Demo = tasks[Add, Ping], plugins[Announce];
/// }
///
/// /// Code that takes the whole app (to start a worker, say) names it.
/// fn describe(app: &Demo) -> usize {
///     app.tasks().len()
/// }
///
/// let app: Demo = QueueTasks::builder("demo").task::<Add>().task::<Ping>().plugin(Announce).build().unwrap();
/// assert_eq!(describe(&app), 2);
/// ```
///
/// The type is an alias of [`QueueTasks`](crate::QueueTasks) with a
/// backend parameter that defaults to
/// [`MemoryBackend`](crate::MemoryBackend): `Demo<AnyBackend>` is the same
/// app on a backend chosen by URL. Tasks and plugins are listed in the
/// order the builder adds them, so the builder's result has exactly this
/// type; if the lists and the builder disagree, the compiler says which
/// type it expected.
///
/// A task name that appears twice, among the tasks and the tasks the
/// plugins bring, is an error reported by `cargo check` at this macro,
/// naming the task. (An app that is never named is checked too, by
/// [`Builder::build`](crate::Builder::build), but only when `cargo build`
/// monomorphizes it.) Only code that needs the whole app's type needs the
/// alias: code that only enqueues and waits takes a
/// [`Client`](crate::Client), which has no type parameters.
#[macro_export]
macro_rules! app {
    (
        $(#[$meta:meta])*
        $vis:vis type $name:ident = tasks [$($task:ty),* $(,)?] $(, plugins [$($plugin:ty),* $(,)?])? $(,)? ;
    ) => {
        $(#[$meta])*
        $vis type $name<B = $crate::MemoryBackend> = $crate::QueueTasks<
            $crate::__app_list!(@tasks (); $($task),*),
            $crate::__app_list!(@plugins (); $($($plugin),*)?),
            B,
        >;

        const _: () = <(
            $crate::__app_list!(@tasks (); $($task),*),
            <$crate::__app_list!(@plugins (); $($($plugin),*)?) as $crate::PluginChain>::Tasks,
        ) as $crate::TaskSet>::NAMES
            .assert_unique();
    };
}

/// Folds a list of tasks or plugins into the type the builder makes.
#[doc(hidden)]
#[macro_export]
macro_rules! __app_list {
    (@tasks $acc:ty;) => { $acc };
    (@tasks $acc:ty; $head:ty $(, $rest:ty)*) => {
        $crate::__app_list!(@tasks <$acc as $crate::dispatch::Append<$head>>::Output; $($rest),*)
    };
    (@plugins $acc:ty;) => { $acc };
    (@plugins $acc:ty; $head:ty $(, $rest:ty)*) => {
        $crate::__app_list!(@plugins <$acc as $crate::dispatch::Append<$crate::Member<$head>>>::Output; $($rest),*)
    };
}
