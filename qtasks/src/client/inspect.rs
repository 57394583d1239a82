//! Inspect an app: its metadata (QTasks's `InspectStats`) and the live
//! counters of its queue.

use crate::app::Error;
use crate::app::QueueTasks;
use crate::backend::{Backend, QueueStats, TaskCounts};
use crate::client::kv::WorkerInfo;
use crate::dispatch::fire_ctx as fire;
use crate::dispatch::{PluginChain, PluginInfo};
use crate::queue::QueueInfo;
use crate::task::{TaskInfo, TaskSet};
use crate::triggers::StatsInspect;
use serde::Serialize;
use std::fmt::{self, Write as _};

/// A snapshot of an app: what it is made of and how its queue is doing.
///
/// Print it as text with `Display`, or as JSON with `serde_json`.
#[derive(Clone, Debug, Serialize)]
pub struct Inspection {
    /// The app itself.
    pub app: AppSummary,
    /// Its tasks, with their options and live counters.
    pub tasks: Vec<TaskSummary>,
    /// Its queues: depth, in flight, paused, limits, oldest waiting task.
    pub queues: Vec<QueueInfo>,
    /// Its plugins, with their metrics.
    pub plugins: Vec<PluginInfo>,
    /// The workers alive on the backend.
    pub workers: Vec<WorkerInfo>,
}

/// The app part of an [`Inspection`].
#[derive(Clone, Debug, Serialize)]
pub struct AppSummary {
    /// The app's name.
    pub name: String,
    /// The qtasks version.
    pub version: &'static str,
    /// The backend's kind (`"memory"`, `"redis"`).
    pub backend: &'static str,
    /// Tasks queued and not yet taken, across every worker.
    pub queued: u64,
    /// Tasks being run by a worker.
    pub in_flight: u64,
    /// How many tasks the app defines.
    pub task_count: usize,
    /// How many plugins the app has.
    pub plugin_count: usize,
    /// The event kinds handlers listen to.
    pub events: Vec<&'static str>,
}

/// One task of an [`Inspection`]: its definition and its counters.
#[derive(Clone, Debug, Serialize)]
pub struct TaskSummary {
    /// What the app knows of the task.
    #[serde(flatten)]
    pub info: TaskInfo,
    /// The plugin that contributes the task (its [`PluginInfo::name`]);
    /// `None` for the app's own tasks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plugin: Option<String>,
    /// How its runs ended so far (kept by the backend, across workers).
    pub counts: TaskCounts,
}

impl<T: TaskSet, C: PluginChain, B: Backend> QueueTasks<T, C, B> {
    /// Inspects the app: its tasks, plugins and live workers, and the
    /// counters of its queues (per queue: depth, in flight, paused, limits,
    /// oldest waiting task; per task how many runs ended `success`, `error`,
    /// `retry` and `cancel`). Fires `stats_inspect`.
    pub async fn inspect(&self) -> Result<Inspection, Error> {
        let inner = &*self.inner;
        fire!(&inner.chain, StatsInspect { app: &inner.name });
        let QueueStats { queued, in_flight, mut tasks } = self.queue_stats().await?;
        let infos = self.tasks();
        let plugins = self.plugins();
        let summaries = infos.iter().map(|info| TaskSummary {
            info: **info,
            plugin: contributed_by(&plugins, info.name).map(str::to_owned),
            counts: tasks.remove(info.name).unwrap_or_default(),
        });
        let events = crate::app::events::EventKind::ALL
            .into_iter()
            .filter(|k| inner.events.listens(*k))
            .map(crate::app::events::EventKind::name)
            .collect();
        Ok(Inspection {
            app: AppSummary {
                name: inner.name.clone(),
                version: env!("CARGO_PKG_VERSION"),
                backend: inner.backend.kind(),
                queued,
                in_flight,
                task_count: infos.len(),
                plugin_count: plugins.len(),
                events,
            },
            tasks: summaries.collect(),
            queues: self.queues().await?,
            plugins,
            workers: self.workers().await?,
        })
    }
}

/// The plugin (of `plugins`) that contributes the task called `task`.
pub(crate) fn contributed_by<'p>(plugins: &'p [PluginInfo], task: &str) -> Option<&'p str> {
    plugins.iter().find(|p| p.tasks.contains(&task)).map(|p| p.name.as_str())
}

/// Width of the label column in the text form.
const LABEL: usize = 20;

fn row(out: &mut String, label: &str, value: impl fmt::Display) {
    let _ = writeln!(out, "  {label:<LABEL$} {value}");
}

impl fmt::Display for Inspection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        let a = &self.app;
        let _ = writeln!(out, "app {}", a.name);
        row(&mut out, "version", a.version);
        row(&mut out, "backend", a.backend);
        row(&mut out, "queued", a.queued);
        row(&mut out, "in flight", a.in_flight);
        row(&mut out, "workers", self.workers.len());
        row(&mut out, "events", if a.events.is_empty() { "-".to_owned() } else { a.events.join(", ") });
        for t in &self.tasks {
            let i = &t.info;
            let _ = writeln!(out, "task {}", i.name);
            if let Some(d) = i.description {
                row(&mut out, "description", d);
            }
            if let Some(p) = &t.plugin {
                row(&mut out, "plugin", p);
            }
            row(&mut out, "priority", i.priority.map_or_else(|| "default".to_owned(), |p| p.to_string()));
            row(&mut out, "parameters", if i.params.is_empty() { "-".to_owned() } else { i.params.join(", ") });
            let kind = match (i.blocking, i.stream) {
                (true, true) => "blocking iterator",
                (true, false) => "blocking",
                (false, true) => "stream",
                (false, false) => "async",
            };
            row(&mut out, "kind", kind);
            row(&mut out, "queue", i.queue);
            if !i.limit.is_none() {
                row(&mut out, "limits", i.limit);
            }
            if let Some(key) = i.concurrency_key {
                row(&mut out, "concurrency key", key);
            }
            if let Some(u) = &i.unique {
                let on = if u.params.is_empty() { "all arguments".to_owned() } else { u.params.join(", ") };
                row(&mut out, "unique", format_args!("on {on}, for {} s after the end", u.window.as_secs_f64()));
            }
            if let Some(m) = i.max_time {
                row(&mut out, "max time", format_args!("{} s", m.as_secs_f64()));
            }
            if i.retry > 0 {
                let on = if i.retry_on.is_empty() { "any error".to_owned() } else { i.retry_on.join(", ") };
                row(&mut out, "retry", format_args!("{} on {on}", i.retry));
            }
            if !i.tags.is_empty() {
                row(&mut out, "tags", i.tags.join(", "));
            }
            let c = &t.counts;
            row(
                &mut out,
                "runs",
                format_args!(
                    "{} success, {} error, {} retry, {} cancel, {} duplicated",
                    c.success, c.error, c.retry, c.cancel, c.duplicates
                ),
            );
        }
        for q in &self.queues {
            let _ = writeln!(out, "queue {}", q.name);
            row(&mut out, "depth", q.depth);
            if q.delayed > 0 {
                row(&mut out, "delayed", q.delayed);
            }
            row(&mut out, "in flight", q.in_flight);
            row(&mut out, "paused", if q.paused { "yes" } else { "no" });
            row(&mut out, "limits", q.limit);
            let age = q.oldest_age.map_or_else(|| "-".to_owned(), |a| format!("{:.1} s", a.as_secs_f64()));
            row(&mut out, "oldest queued", age);
        }
        for p in &self.plugins {
            let _ = writeln!(out, "plugin {} {}", p.name, p.version);
            if let Some(on) = p.enabled {
                row(&mut out, "enabled", on);
            }
            row(&mut out, "errors", p.errors);
            row(&mut out, "panics", p.panics);
        }
        for w in &self.workers {
            let _ = writeln!(out, "worker {}", w.id);
        }
        f.write_str(&out)
    }
}
