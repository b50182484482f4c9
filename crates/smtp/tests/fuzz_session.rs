//! Bounded fuzzing of the SMTP session state machine on stable Rust: a seeded stream of
//! client inputs (the nasty seeds in fuzz/seeds/smtp_session, mutations of them, and
//! command sequences from a small grammar) each drives a real `Session` over an
//! in-memory pipe. Every session must end without a panic, within its deadlines, with
//! well-formed replies, never storing more than the size and recipient limits allow.
//! The coverage-guided twin is fuzz/fuzz_targets/smtp_session.rs (docs/SECURITY.md).

#[path = "../../../fuzz/common/mutate.rs"]
mod mutate;

#[path = "../../../fuzz/common/smtp.rs"]
mod smtp;

use mutate::Rng;
use smtp::{Client, DICT, converse};

const TARGET: &str = "smtp_session";

/// A sequence of mostly valid commands with some bodies, garbage and odd line ends.
fn grammar(rng: &mut Rng) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..1 + rng.below(24) {
        match rng.below(12) {
            0..=6 => {
                let token = rng.choose(DICT);
                out.extend_from_slice(token);
            }
            7 => {
                let n = *rng.pick(&[0, 10, 500, 1990, 2001, 5000]);
                out.extend(std::iter::repeat_n(b'm', n));
                out.extend_from_slice(b"\r\n.\r\n");
            }
            8 => {
                let n = rng.below(40);
                out.extend(rng.bytes(n));
            }
            9 => {
                let n = *rng.pick(&[995, 998, 999, 1000, 1001, 3000]);
                out.extend_from_slice(b"NOOP ");
                out.extend(std::iter::repeat_n(b'x', n));
                out.extend_from_slice(b"\r\n");
            }
            10 => {
                for i in 0..rng.below(8) {
                    out.extend_from_slice(format!("RCPT TO:<r{i}@here.test>\r\n").as_bytes());
                }
            }
            _ => {
                let n = 1 + rng.below(30);
                out.extend(std::iter::repeat_n(b"BOGUS\r\n".iter().copied(), n).flatten());
            }
        }
    }
    out
}

fn client(rng: &mut Rng, input: Vec<u8>) -> Client {
    // Tiny pipes only for small inputs: a byte at a time is slow in a debug build.
    let pipes: &[usize] = if input.len() < 2048 { &[1, 7, 64, 1024, 64 * 1024] } else { &[1024, 64 * 1024] };
    Client {
        pipe: *rng.pick(pipes),
        input,
        chunk: *rng.pick(&[1, 3, 100, 4096, usize::MAX]),
        stall: rng.one_in(40),
        tls: rng.one_in(2),
    }
}

fn run(seed: u64, iteration: usize, runtime: &tokio::runtime::Runtime, client: Client) {
    let input = client.input.clone();
    if let Err(why) = runtime.block_on(converse(client)) {
        mutate::fail(TARGET, seed, iteration, &input, &why);
    }
}

#[test]
fn smtp_sessions_survive_hostile_clients() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let seeds = mutate::seeds(TARGET);
    let seed = mutate::base_seed(TARGET);
    let mut rng = Rng::new(seed);
    let mut iteration = 0;
    // Every seed as it is, over a whole pipe and over a one-byte one.
    for (_, input) in &seeds {
        for pipe in [64 * 1024, 1] {
            let c = Client { input: input.clone(), pipe, chunk: usize::MAX, stall: false, tls: true };
            run(seed, iteration, &runtime, c);
            iteration += 1;
        }
    }
    for _ in 0..mutate::iterations(1500) {
        let input = if rng.one_in(2) {
            grammar(&mut rng)
        } else {
            let base = rng.pick(&seeds).1.clone();
            mutate::mutate(&mut rng, &base, DICT, &seeds, 16 * 1024)
        };
        let c = client(&mut rng, input);
        run(seed, iteration, &runtime, c);
        iteration += 1;
    }
}
