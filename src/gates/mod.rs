//! The gates a request passes, one module each; [`crate::stack`] orders them.

pub mod authn;
pub mod authz;
pub mod context;
pub mod cors;
pub mod csrf;
pub mod gate;
pub mod headers;
pub mod limits;
pub mod path;
pub mod rate_limit;
pub mod route;
pub mod session;
pub mod shed;
pub mod validate;
