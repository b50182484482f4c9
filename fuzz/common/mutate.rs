//! The bounded, deterministic fuzzing used by the stable test suite (crates/*/tests/fuzz_*.rs
//! include this file with `#[path]`): a seeded PRNG, the seed corpus in fuzz/seeds/, a
//! byte mutator, and reporting that names the seed and iteration of a failing input so
//! the run can be repeated exactly. Counts, never time, bound every run.
//!
//! `SENDMUX_FUZZ_ITERS` scales the iteration count (the default keeps the suite fast);
//! `SENDMUX_FUZZ_SEED` picks another random stream. Coverage-guided runs use cargo-fuzz
//! on the targets in fuzz/fuzz_targets/ (docs/SECURITY.md).

#![allow(dead_code)]

use std::path::PathBuf;

/// splitmix64: tiny, fast, and the same stream everywhere for one seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    /// True with probability `1/n`.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
    /// `pick` for small `Copy` items (byte strings, numbers), by value.
    pub fn choose<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }
}

/// The iteration count: `default` times `SENDMUX_FUZZ_ITERS / 100` when that is set
/// (so `SENDMUX_FUZZ_ITERS=10000` runs a hundred times longer than the default).
pub fn iterations(default: usize) -> usize {
    match std::env::var("SENDMUX_FUZZ_ITERS").ok().and_then(|v| v.parse::<usize>().ok()) {
        Some(scale) => (default * scale / 100).max(1),
        None => default,
    }
}

/// The input saved from a failure, when `SENDMUX_FUZZ_REPLAY` names its file: the run
/// then checks that input alone (a panic shows with its backtrace).
pub fn replay() -> Option<Vec<u8>> {
    let path = std::env::var_os("SENDMUX_FUZZ_REPLAY")?;
    Some(std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.to_string_lossy())))
}

/// The base seed of the random stream; each target mixes in its own name.
pub fn base_seed(target: &str) -> u64 {
    let base = std::env::var("SENDMUX_FUZZ_SEED").ok().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0x5e4d_4d75);
    target.bytes().fold(base, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

/// Every seed input of `target` (fuzz/seeds/<target>/), sorted by name.
pub fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds").join(target);
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading the seed corpus {}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.unwrap().path();
            (path.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&path).unwrap())
        })
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no seeds in {}", dir.display());
    out
}

/// One to four random edits of `input`: byte flips, inserted random bytes or
/// dictionary tokens, deletions, duplications, splices with another seed, line-ending
/// changes, long runs. The result is at most `max_len` bytes.
pub fn mutate(rng: &mut Rng, input: &[u8], dict: &[&[u8]], others: &[(String, Vec<u8>)], max_len: usize) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = if out.is_empty() { 0 } else { rng.below(out.len() + 1) };
        match rng.below(10) {
            0 if !out.is_empty() => {
                let i = rng.below(out.len());
                out[i] ^= 1 << rng.below(8);
            }
            1 => {
                let n = 1 + rng.below(8);
                let b = rng.bytes(n);
                out.splice(at..at, b);
            }
            2 | 3 => {
                let token = rng.pick(dict).to_vec();
                out.splice(at..at, token);
            }
            4 if !out.is_empty() => {
                let end = (at + 1 + rng.below(64)).min(out.len());
                out.drain(at.min(end)..end);
            }
            5 if !out.is_empty() => {
                let end = (at + 1 + rng.below(256)).min(out.len());
                let copy = out[at.min(end)..end].to_vec();
                out.splice(at..at, copy);
            }
            6 if !others.is_empty() => {
                let other = &rng.pick(others).1;
                let from = rng.below(other.len() + 1);
                let end = (from + rng.below(512)).min(other.len());
                out.truncate(at);
                out.extend_from_slice(&other[from..end]);
            }
            7 => {
                // Swap line endings: CRLF to LF or CR, or LF to CRLF.
                let (from, to): (&[u8], &[u8]) =
                    *rng.pick(&[(&b"\r\n"[..], &b"\n"[..]), (&b"\r\n"[..], &b"\r"[..]), (&b"\n"[..], &b"\r\n"[..])]);
                out = replace_first_after(&out, at, from, to);
            }
            8 => {
                let byte = *rng.pick(b"x\0\xff .=-[{");
                let n = *rng.pick(&[64, 999, 1000, 1001, 4096, 70_000]);
                out.splice(at..at, std::iter::repeat_n(byte, n));
            }
            _ => out.truncate(at),
        }
    }
    out.truncate(max_len);
    out
}

fn replace_first_after(s: &[u8], start: usize, from: &[u8], to: &[u8]) -> Vec<u8> {
    let start = start.min(s.len());
    match s[start..].windows(from.len()).position(|w| w == from) {
        Some(i) => [&s[..start + i], to, &s[start + i + from.len()..]].concat(),
        None => s.to_vec(),
    }
}

/// Runs `check` on `input`; a panic is reported with what repeats it (seed, iteration,
/// the input escaped and saved to a file) and then fails the test.
pub fn check_one(target: &str, seed: u64, iteration: usize, input: &[u8], check: impl FnOnce(&[u8])) {
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(input)));
    if let Err(panic) = outcome {
        fail(target, seed, iteration, input, &panic_text(&panic));
    }
}

pub fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "(a panic without a message)".to_owned())
}

/// Saves `input` under the temporary folder and fails with everything needed to repeat it.
pub fn fail(target: &str, seed: u64, iteration: usize, input: &[u8], why: &str) -> ! {
    let path = std::env::temp_dir().join(format!("sendmux-fuzz-{target}-{seed:x}-{iteration}.bin"));
    let saved = std::fs::write(&path, input).map(|_| path.display().to_string()).unwrap_or_else(|e| e.to_string());
    panic!(
        "{target}: iteration {iteration} of seed {seed:#x} failed: {why}\n\
         input saved to {saved}\ninput ({} bytes, escaped, first 2000): {}",
        input.len(),
        escape(&input[..input.len().min(2000)]),
    );
}

pub fn escape(bytes: &[u8]) -> String {
    bytes.iter().flat_map(|&b| std::ascii::escape_default(b)).map(char::from).collect()
}

/// The usual run of a byte-input target: every seed as it is, then `default_iters`
/// (scaled by `SENDMUX_FUZZ_ITERS`) inputs, each either made by `generate` or a mutation
/// of a seed, all checked with `check`.
pub fn run_bytes(
    target: &str,
    default_iters: usize,
    dict: &[&[u8]],
    max_len: usize,
    mut generate: impl FnMut(&mut Rng) -> Vec<u8>,
    check: impl Fn(&[u8]),
) {
    if let Some(input) = replay() {
        check(&input);
        return;
    }
    let seeds = seeds(target);
    let seed = base_seed(target);
    let mut rng = Rng::new(seed);
    let mut iteration = 0;
    for (_, input) in &seeds {
        check_one(target, seed, iteration, input, &check);
        iteration += 1;
    }
    for _ in 0..iterations(default_iters) {
        let input = if rng.one_in(2) {
            generate(&mut rng)
        } else {
            let base = rng.pick(&seeds).1.clone();
            mutate(&mut rng, &base, dict, &seeds, max_len)
        };
        check_one(target, seed, iteration, &input, &check);
        iteration += 1;
    }
}
