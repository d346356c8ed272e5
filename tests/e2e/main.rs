//! End-to-end tests: the real `nook` binary, run as an unprivileged user with subordinate ids
//! (see `common`). One test binary, so the suite links once.

mod common;

mod cli;
mod images;
mod isolation;
mod pull;
mod pull_errors;
mod rig;
mod run;
mod terminal;
mod users;
