//! Any bytes as a `POST /emails` body: see fuzz/common/send_request.rs for what must hold.
#![no_main]

#[path = "../common/send_request.rs"]
mod send_request;

libfuzzer_sys::fuzz_target!(|body: &[u8]| {
    send_request::check(body);
});
