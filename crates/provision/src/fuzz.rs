//! Entry points for fuzzing the parsers of untrusted input (the cargo-fuzz targets call them;
//! see `crates/provision/fuzz_targets.md`). Neither may panic on any input.

use std::path::Path;

/// Parses `data` as a manifest file.
pub fn fuzz_manifest(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::manifest::parse(Path::new("fuzz.yaml"), text);
    }
}

/// Parses `data` as a repository index, and verifies it against an empty trust store.
pub fn fuzz_index(data: &[u8]) {
    if let Ok(index) = crate::index::parse("fuzz", data) {
        for (name, entries) in &index.packages {
            let _ = index.find(name, "latest");
            for e in entries {
                let _ = crate::index::Ext::of(&e.file, name, &e.version);
            }
        }
    }
    let _ = crate::index::Ext::split(&String::from_utf8_lossy(data));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// xorshift64*: reproducible bytes without a dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
    }

    const SEEDS: &[&str] = &[
        "composable:\n  default_repository: http://x/\n  packages:\n    - name: goss\n      version: v1\n      enable: [goss.service]\n",
        "{\"format\":\"realms-provision-index v1\",\"arch\":\"amd64\",\"stream\":\"stable\",\"serial\":1,\"published\":0,\"expires\":9,\"packages\":{\"foo\":[{\"version\":\"1\",\"file\":\"foo_1.tar\",\"sha256\":\"0000000000000000000000000000000000000000000000000000000000000000\",\"size\":1,\"installed-size\":1}]}}",
        "a: &a [*a, *a, *a]\nb: !!binary x\n? [1]\n: 2\n",
        "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
    ];

    #[test]
    fn random_and_mutated_input_never_panics() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for round in 0..3000 {
            let mut data: Vec<u8> = if round % 3 == 0 {
                (0..rng.next() % 300).map(|_| rng.next() as u8).collect()
            } else {
                SEEDS[round % SEEDS.len()].as_bytes().to_vec()
            };
            for _ in 0..(rng.next() % 8) {
                if data.is_empty() {
                    break;
                }
                let at = (rng.next() as usize) % data.len();
                match rng.next() % 3 {
                    0 => data[at] = rng.next() as u8,
                    1 => {
                        data.remove(at);
                    }
                    _ => data.insert(at, b"-:[]{}&*!\n #\"'"[(rng.next() % 14) as usize]),
                }
            }
            fuzz_manifest(&data);
            fuzz_index(&data);
        }
        // Deep nesting stays an error, not a stack overflow.
        fuzz_manifest("[".repeat(100_000).as_bytes());
        fuzz_index("[".repeat(100_000).as_bytes());
    }
}
