//! The integration tests: one binary that drives the real `tollgate` executable (see `support`).
//!
//! `cargo test --test it` runs them all; `cargo test --test it harness` only the harness's own.
// A binary crate has no public surface: `pub` here only shares items between its modules.
#![allow(unreachable_pub)]
#![allow(clippy::unwrap_used)]

mod support;

mod as_users;
mod auth_basic;
mod auth_common;
mod auth_hmac;
mod auth_jwt;
mod auth_key;
mod auth_multi;
mod availability;
mod consumers;
mod core;
mod harness;
mod limit_count;
mod observability;
mod plugin_cors;
mod plugin_forward_auth;
mod plugin_ip_restriction;
mod plugin_limit_conn;
mod plugin_limit_req;
mod plugin_order;
mod plugin_proxy_rewrite;
mod plugin_request_id;
mod plugin_response_rewrite;
mod promises;
mod reload_reuse;
mod restriction;
mod scale_config;
mod security;
mod signing;
