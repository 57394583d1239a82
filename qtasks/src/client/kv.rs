//! Shared settings and the worker registry (QTasks's global config).

use crate::app::Error;
use crate::app::QueueTasks;
use crate::backend::Backend;
use crate::dispatch::PluginChain;
use crate::dispatch::fire_ctx as fire;
use crate::task::TaskSet;
use crate::triggers::*;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::time::Duration;

/// The settings group workers register in.
pub(crate) const WORKERS: &str = "workers";
/// How long a worker stays listed without a heartbeat.
pub(crate) const WORKER_TTL: Duration = Duration::from_secs(20);
/// How often a worker renews its entry.
pub(crate) const HEARTBEAT: Duration = Duration::from_secs(5);
/// The settings group of the plugin switches every worker applies
/// ([`QueueTasks::switch_plugin`]): plugin name → `true`/`false`.
pub const PLUGIN_SWITCHES: &str = "plugins";

/// A live worker, as it registers itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkerInfo {
    /// Unique id: `{host}-{pid}-{random}`.
    pub id: String,
    /// The app's name.
    pub app: String,
    /// The host it runs on.
    pub host: String,
    /// Its process id.
    pub pid: u32,
    /// How many tasks it runs at once.
    pub concurrency: usize,
    /// The backend it uses.
    pub backend: String,
    /// When it started (seconds since the Unix epoch).
    pub started_at: f64,
    /// The queues it takes from, in its order (empty in entries written
    /// by an older qtasks).
    #[serde(default)]
    pub queues: Vec<String>,
    /// When it last renewed its entry (seconds since the Unix epoch);
    /// `None` in entries written by an older qtasks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_at: Option<f64>,
    /// Its plugins at its last heartbeat: each one's
    /// [`PluginInfo`](crate::PluginInfo) as JSON (name, version, triggers,
    /// errors, panics, enabled, per-trigger stats).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub plugins: Vec<Value>,
    /// How many tasks it held at its last heartbeat: running, or ended and
    /// having their final record written (up to twice its
    /// `max_tasks_process` on a backend with leases; 0 in entries written by
    /// an older qtasks).
    #[serde(default)]
    pub in_flight: usize,
}

impl WorkerInfo {
    pub(crate) fn new(app: &str, backend: &str, concurrency: usize) -> Self {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".to_owned());
        let pid = std::process::id();
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        Self {
            id: format!("{host}-{pid}-{}", &suffix[..8]),
            app: app.to_owned(),
            host,
            pid,
            concurrency,
            backend: backend.to_owned(),
            started_at: crate::model::now(),
            queues: Vec::new(),
            heartbeat_at: None,
            plugins: Vec::new(),
            in_flight: 0,
        }
    }
}

impl<T: TaskSet, C: PluginChain, B: Backend> QueueTasks<T, C, B> {
    /// Writes a shared setting in group `name` of the app's global config
    /// (QTasks's `GlobalConfig`, kept by the backend and seen by every
    /// process; not the app's [`Config`](crate::Config)). Fires
    /// `global_config_set`, whose handlers may replace the value.
    pub async fn global_set(&self, name: &str, key: &str, value: Value) -> Result<(), Error> {
        self.global_set_ttl(name, key, value, None).await
    }

    pub(crate) async fn global_set_ttl(
        &self,
        name: &str,
        key: &str,
        value: Value,
        ttl: Option<Duration>,
    ) -> Result<(), Error> {
        let app = &*self.inner;
        let value = fire!(&app.chain, GlobalConfigSet { app: &app.name, name, key, value }).value;
        Ok(app.backend.config_set(name, key, &value, ttl).await?)
    }

    /// Reads a shared setting (fires `global_config_get`).
    pub async fn global_get(&self, name: &str, key: &str) -> Result<Option<Value>, Error> {
        let app = &*self.inner;
        let value = app.backend.config_get(name, key).await?;
        Ok(fire!(&app.chain, GlobalConfigGet { app: &app.name, name, key, value }).value)
    }

    /// Reads every live setting of group `name` (fires `global_config_get_all`).
    pub async fn global_get_all(&self, name: &str) -> Result<Map<String, Value>, Error> {
        let app = &*self.inner;
        let values = app.backend.config_get_all(name).await?;
        Ok(fire!(&app.chain, GlobalConfigGetAll { app: &app.name, name, values }).values)
    }

    /// The workers of this app that are alive: registered and heard from in
    /// the last 20 seconds.
    pub async fn workers(&self) -> Result<Vec<WorkerInfo>, Error> {
        let mut workers: Vec<WorkerInfo> = self
            .global_get_all(WORKERS)
            .await?
            .into_iter()
            .filter_map(|(id, v)| match serde_json::from_value(v) {
                Ok(w) => Some(w),
                Err(error) => {
                    tracing::warn!(worker = %id, %error, "skipping an unreadable worker entry");
                    None
                }
            })
            .collect();
        workers.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(workers)
    }

    /// Switches the plugins called `name` on or off in every process of
    /// the app: stored in the backend's shared settings (group
    /// [`PLUGIN_SWITCHES`], fires `global_config_set`), applied here at
    /// once and by each worker at its next heartbeat (within 5 seconds),
    /// also by workers started later. Returns how many plugins of this
    /// process were switched (only [`Managed`](crate::plugin::Managed)
    /// plugins can be).
    pub async fn switch_plugin(&self, name: &str, on: bool) -> Result<usize, Error> {
        self.global_set(PLUGIN_SWITCHES, name, Value::Bool(on)).await?;
        Ok(self.set_plugin_enabled(name, on))
    }

    /// The plugin switches set with [`switch_plugin`](Self::switch_plugin):
    /// plugin name → on.
    pub async fn plugin_switches(&self) -> Result<std::collections::BTreeMap<String, bool>, Error> {
        let all = self.inner.backend.config_get_all(PLUGIN_SWITCHES).await?;
        Ok(all.into_iter().filter_map(|(k, v)| Some((k, v.as_bool()?))).collect())
    }

    /// Applies the shared plugin switches to this process's plugins (what
    /// a worker does at each heartbeat). Read without firing the
    /// `global_config_*` triggers, so a heartbeat fires what it always did.
    pub(crate) async fn apply_plugin_switches(&self) -> Result<(), Error> {
        for (name, on) in self.plugin_switches().await? {
            self.set_plugin_enabled(&name, on);
        }
        Ok(())
    }

    /// `true` if a worker of this app is alive (fires `qtasks_ping`).
    pub async fn ping(&self) -> bool {
        let app = &*self.inner;
        fire!(&app.chain, QtasksPing { app: &app.name });
        match self.workers().await {
            Ok(workers) => !workers.is_empty(),
            Err(error) => {
                tracing::warn!(app = %app.name, %error, "ping could not read the worker registry");
                false
            }
        }
    }
}
