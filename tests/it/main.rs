//! The integration tests: one crate, one module per behaviour (each module's name states the
//! guarantee it proves), sharing the support in `tests/support/` (Kratos fixtures, the fake
//! Kratos, a gateway on port 0, clients). `tests/properties.rs` (proptest) and `tests/soak.rs`
//! (which bounds its own process's memory) are separate binaries.
//!
//! Run one behaviour with `cargo test --test it <module>`.

#[path = "../support/mod.rs"]
mod support;

mod admin_api_key;
mod admin_api_not_on_public;
mod attack_amplification;
mod attack_client_echo;
mod attack_forwarding_spoofing;
mod attack_header_name_confusion;
mod attack_hop_by_hop;
mod attack_http2_cookie_splitting;
mod attack_path_confusion;
mod attack_protocol_upgrade;
mod attack_request_smuggling;
mod attack_resource_exhaustion;
mod attack_response_tricks;
mod blocklist_cli;
mod blocklist_reload;
mod check_agrees_with_serve;
mod check_cli;
mod deploy_examples;
mod email_and_domain_entries;
mod existing_sessions_die;
mod fail_closed_when_kratos_unreachable;
mod fake_kratos_selftest;
mod fault_injection;
mod forwarding_headers;
mod graceful_shutdown;
mod http2_client;
mod inspection_limits;
mod kratos_sdk_compat;
mod kratos_web_hook;
mod logs_and_health;
mod networks;
mod no_credential_leaves;
mod no_extension;
mod ops_endpoints;
mod passthrough_fidelity;
mod path_spelling;
mod remote_source;
mod report_mode;
mod revocation_journal;
mod revoke_on_add;
mod runtime_layout;
mod signed_out_and_schemas;
mod slow_upload_is_not_a_slow_kratos;
mod throttle;
mod tls_listeners;
mod upstream_failures;
