//! Auth plugins: a closed enum of schemes, run by priority (AND across plugins), multi-auth (OR)
//! and the anonymous-consumer fallback.

pub mod basic_auth;
pub mod hmac_auth;
pub mod jwt_auth;
pub mod key_auth;
pub mod multi_auth;
