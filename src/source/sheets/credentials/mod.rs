//! Google credentials as Application Default Credentials are found and
//! used, without Google's client libraries: the credential file's kinds
//! (`file`), the token each kind trades for (`flow`), the requests that do
//! it (`grant`, `jwt`) and the metadata server (`metadata`). The order in
//! which they are looked for, and the token cache, are `super::auth`'s.

pub mod file;
pub mod flow;
mod grant;
mod jwt;
pub mod metadata;
