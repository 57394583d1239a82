//! Built-in plugins for qtasks, written only against its public `Plugin` API.
//!
//! Empty for now: the tracing, metrics and testing plugins come with the
//! plugin-system work.
