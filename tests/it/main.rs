//! Integration tests: keyward in-process on a random loopback port, each test
//! on a fresh SQLite file *and* a fresh PostgreSQL database; plus tests of
//! the real binary (`process`).

mod harness;

mod account;
mod admin_config;
mod admin_users;
mod agents;
mod auth_gate;
mod basics;
mod cluster;
mod connections;
mod console;
mod delegated_oauth;
mod dynamic_registration;
mod gateway;
mod integration_api;
mod jwt_access_tokens;
mod m2m_clients;
mod oauth_token_endpoint;
mod openapi_docs;
mod outage;
mod outbound_clients;
mod process;
mod properties;
mod races;
mod remembered_tokens;
mod retention;
mod security_review;
mod sso;
mod vault;
