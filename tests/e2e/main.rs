//! End-to-end tests: the real `nook` binary, run as an unprivileged user with subordinate ids
//! (see `common`). One test binary, so the suite links once.

mod common;

mod archive;
mod auth;
mod cli;
mod commit_save;
mod exec;
mod image_verbs;
mod images;
mod isolation;
mod keepid;
mod lifecycle;
mod pull;
mod pull_errors;
mod push;
mod rig;
mod run;
mod storage;
mod storage_env;
mod terminal;
mod users;
