//! pullwarden's pure core: the domain model of a workspace, the type that
//! holds credentials, and (later) the planner.
//!
//! Architecture invariant: this crate does no I/O. No filesystem, no
//! environment, no network, no clock, no tokio. Everything it needs is passed
//! in as plain data, so every behaviour here is testable with values alone.

pub mod dockerconfig;
pub mod drift;
pub mod escape;
pub mod import;
pub mod live;
pub mod model;
pub mod names;
pub mod plan;
pub mod pull;
pub mod render;
pub mod saved;
pub mod secret;
