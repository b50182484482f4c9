//! Any bytes as an inbound message: see fuzz/common/inbound.rs for what must hold.
#![no_main]

#[path = "../common/inbound.rs"]
mod inbound;

libfuzzer_sys::fuzz_target!(
    init: {
        // cargo-fuzz builds with debug assertions: let mail-parser's known one unwind
        // (and be ignored below) instead of reaching libFuzzer's aborting hook.
        let aborting = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !inbound::is_known(info.payload()) {
                aborting(info);
            }
        }));
    },
    |raw: &[u8]| {
        if let Err(panic) = std::panic::catch_unwind(|| inbound::check(raw)) {
            // Anything else already aborted in the hook.
            assert!(inbound::is_known(&*panic));
        }
    }
);
