//! Owned copies of trigger contexts, for handlers that run detached.
//!
//! A blocking handler runs on a blocking-pool thread that may outlive the
//! chain's wait for it (past its time budget it is left to finish
//! detached), so it cannot borrow the context: it gets a snapshot instead,
//! an owned copy it views as the usual `&Context<'_>`.

use super::triggers::Phase;
use crate::model::{NewTask, TaskMessage, TaskRecord, TaskStatus};
use crate::task::{PluginError, TaskInfo};
use serde_json::{Map, Value};
use uuid::Uuid;

/// A context field that can be copied into an owned snapshot and viewed
/// back with the snapshot's lifetime.
pub trait Own<'a>: Sized {
    /// The owned copy.
    type Owned: Send + Sync + 'static;
    /// Copies the field.
    fn own(&self) -> Self::Owned;
    /// The field, borrowed from (or copied out of) the snapshot.
    fn view(owned: &'a Self::Owned) -> Self;
}

impl<'a> Own<'a> for &'a str {
    type Owned = String;
    fn own(&self) -> String {
        (*self).to_owned()
    }
    fn view(owned: &'a String) -> Self {
        owned
    }
}

impl<'a, T: Clone + Send + Sync + 'static> Own<'a> for &'a T {
    type Owned = T;
    fn own(&self) -> T {
        (*self).clone()
    }
    fn view(owned: &'a T) -> Self {
        owned
    }
}

impl<'a> Own<'a> for Option<&'a TaskInfo> {
    type Owned = Option<TaskInfo>;
    fn own(&self) -> Option<TaskInfo> {
        self.copied()
    }
    fn view(owned: &'a Option<TaskInfo>) -> Self {
        owned.as_ref()
    }
}

macro_rules! owned_by_value {
    ($($t:ty),* $(,)?) => {$(
        impl<'a> Own<'a> for $t {
            type Owned = $t;
            fn own(&self) -> $t {
                self.clone()
            }
            fn view(owned: &'a $t) -> Self {
                owned.clone()
            }
        }
    )*};
}

owned_by_value!(
    NewTask,
    TaskRecord,
    TaskMessage,
    TaskStatus,
    Value,
    Option<Value>,
    Option<TaskRecord>,
    Vec<TaskRecord>,
    Vec<Value>,
    Map<String, Value>,
    Uuid,
    usize,
    Phase,
);

#[allow(dead_code)]
fn _plugin_error_is_owned(e: &PluginError) -> PluginError {
    <&PluginError as Own<'_>>::own(&e)
}
