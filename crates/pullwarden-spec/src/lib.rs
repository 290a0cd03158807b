//! placeholder
pub mod yaml;
