//! keyward: the identity and credential hub of a data platform.
//! See ARCHITECTURE.md for the map.

pub mod app;
pub mod bootstrap;
pub mod cli;
pub mod config;
pub mod crypto;
pub mod domain;
pub mod http;
pub mod memory;
pub mod server;
pub mod store;
