//! Any bytes as what an SMTP client sends: the first byte picks how the client behaves
//! (pipe size, write size, STARTTLS offered), the rest is the conversation. The session
//! must end, without a panic, with well-formed replies: see fuzz/common/smtp.rs.
#![no_main]

#[path = "../common/smtp.rs"]
mod smtp;

use std::sync::OnceLock;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap())
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let (mode, input) = data.split_first().map_or((0, data), |(m, rest)| (*m, rest));
    let client = smtp::Client {
        input: input.to_vec(),
        pipe: [64 * 1024, 1024, 64, 7][usize::from(mode & 3)],
        chunk: [usize::MAX, 4096, 100, 3][usize::from((mode >> 2) & 3)],
        // Stalled clients wait out a deadline: too slow to explore here, and the stable
        // test covers them.
        stall: false,
        tls: mode & 16 != 0,
    };
    if let Err(why) = runtime().block_on(smtp::converse(client)) {
        panic!("{why}");
    }
});
