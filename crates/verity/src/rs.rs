//! Reed–Solomon RS(255, 255 - roots) over GF(2^8), the code dm-verity's forward error correction
//! uses: field polynomial 0x11d, generator roots α^0 .. α^(roots-1) (libfec's `init_rs_char(8,
//! 0x11d, 0, 1, roots, 0)`), the message first and the parity bytes last in a codeword.
//!
//! [`Encoder`] computes parity by linearity: the parity of a message is the sum of each symbol
//! times the parity of the unit message at its position, so a precomputed table turns every
//! message byte into one lookup and a few 64-bit XORs, for many codewords side by side.
//! [`decode`] corrects up to `roots / 2` symbol errors (Berlekamp–Massey, Chien search, Forney).

/// The field's primitive polynomial, x^8 + x^4 + x^3 + x^2 + 1.
const POLY: u16 = 0x11d;
/// Symbols in a codeword.
pub(crate) const N: usize = 255;

/// Exponent and logarithm tables of GF(2^8).
struct Gf {
    exp: [u8; 512],
    log: [u8; 256],
}

const fn gf_tables() -> Gf {
    let mut exp = [0u8; 512];
    let mut log = [0u8; 256];
    let mut x: u16 = 1;
    let mut i = 0;
    while i < 255 {
        exp[i] = x as u8;
        exp[i + 255] = x as u8;
        log[x as usize] = i as u8;
        x <<= 1;
        if x & 0x100 != 0 {
            x ^= POLY;
        }
        i += 1;
    }
    exp[510] = exp[0];
    exp[511] = exp[1];
    Gf { exp, log }
}

static GF: Gf = gf_tables();

/// Product in GF(2^8).
pub(crate) fn mul(a: u8, b: u8) -> u8 {
    if a == 0 || b == 0 {
        return 0;
    }
    GF.exp[usize::from(GF.log[usize::from(a)]) + usize::from(GF.log[usize::from(b)])]
}

/// Inverse in GF(2^8); `a` must not be zero.
fn inv(a: u8) -> u8 {
    GF.exp[255 - usize::from(GF.log[usize::from(a)])]
}

/// α^e.
fn alpha(e: usize) -> u8 {
    GF.exp[e % 255]
}

/// The generator polynomial Π (x - α^i), i < roots, highest degree first (monic).
fn generator(roots: usize) -> Vec<u8> {
    let mut g = vec![1u8];
    for i in 0..roots {
        // g(x) * (x + α^i)
        let root = alpha(i);
        let mut next = vec![0u8; g.len() + 1];
        for (j, &c) in g.iter().enumerate() {
            next[j] ^= c;
            next[j + 1] ^= mul(c, root);
        }
        g = next;
    }
    g
}

/// The parity of `message` (`255 - roots` symbols) by polynomial division, symbol by symbol: the
/// reference the table encoder is built from and tested against.
pub(crate) fn parity_reference(message: &[u8], roots: usize) -> Vec<u8> {
    let g = generator(roots);
    let mut rem = vec![0u8; roots];
    for &m in message {
        let feedback = m ^ rem[0];
        rem.rotate_left(1);
        rem[roots - 1] = 0;
        if feedback != 0 {
            for (r, &gc) in rem.iter_mut().zip(&g[1..]) {
                *r ^= mul(feedback, gc);
            }
        }
    }
    rem
}

/// Parity of many codewords at once: codeword `b` takes byte `b` of each of the `255 - roots`
/// message blocks.
#[derive(Debug, Clone)]
pub(crate) struct Encoder {
    roots: usize,
    words: usize,
    /// For message position `i` and symbol value `v`: `v` times the parity of the unit message
    /// at `i`, packed little-endian into `words` u64s; index `(i * 256 + v) * words`.
    table: Vec<u64>,
}

impl Encoder {
    /// An encoder for `roots` parity bytes (2 to 24).
    pub(crate) fn new(roots: usize) -> Encoder {
        let k = N - roots;
        let words = roots.div_ceil(8);
        let mut table = vec![0u64; k * 256 * words];
        let mut unit = vec![0u8; k];
        for i in 0..k {
            unit[i] = 1;
            let base = parity_reference(&unit, roots);
            unit[i] = 0;
            for v in 1..=255u8 {
                let mut bytes = [0u8; 24];
                for (o, &p) in bytes.iter_mut().zip(&base) {
                    *o = mul(p, v);
                }
                let at = (i * 256 + usize::from(v)) * words;
                for (w, chunk) in table[at..at + words].iter_mut().zip(bytes.chunks(8)) {
                    let mut le = [0u8; 8];
                    le.copy_from_slice(chunk);
                    *w = u64::from_le_bytes(le);
                }
            }
        }
        Encoder {
            roots,
            words,
            table,
        }
    }

    /// Message symbols per codeword.
    pub(crate) fn message_len(&self) -> usize {
        N - self.roots
    }

    /// Writes the parity of `block_size` codewords into `out` (`block_size * roots` bytes,
    /// codeword after codeword). Message block `i` is `blocks[i * stride..][..block_size]` for
    /// `i < present`; the blocks after `present` are zeros.
    pub(crate) fn encode(
        &self,
        blocks: &[u8],
        stride: usize,
        present: usize,
        block_size: usize,
        out: &mut [u8],
    ) {
        match self.words {
            1 => self.encode_words::<1>(blocks, stride, present, block_size, out),
            2 => self.encode_words::<2>(blocks, stride, present, block_size, out),
            _ => self.encode_words::<3>(blocks, stride, present, block_size, out),
        }
    }

    fn encode_words<const W: usize>(
        &self,
        blocks: &[u8],
        stride: usize,
        present: usize,
        block_size: usize,
        out: &mut [u8],
    ) {
        let mut acc = vec![[0u64; W]; block_size];
        for i in 0..present.min(self.message_len()) {
            let table = &self.table[i * 256 * W..(i + 1) * 256 * W];
            let block = &blocks[i * stride..i * stride + block_size];
            for (a, &v) in acc.iter_mut().zip(block) {
                let t = &table[usize::from(v) * W..usize::from(v) * W + W];
                for w in 0..W {
                    a[w] ^= t[w];
                }
            }
        }
        for (a, parity) in acc.iter().zip(out.chunks_exact_mut(self.roots)) {
            let mut bytes = [0u8; 24];
            for (w, chunk) in a.iter().zip(bytes.chunks_mut(8)) {
                chunk.copy_from_slice(&w.to_le_bytes());
            }
            parity.copy_from_slice(&bytes[..self.roots]);
        }
    }
}

/// Corrects `codeword` (255 symbols, parity last) in place; returns the number of symbols
/// corrected, or `None` when there are more errors than `roots / 2` can correct.
pub(crate) fn decode(codeword: &mut [u8; N], roots: usize) -> Option<usize> {
    // Syndromes S_j = r(α^j), the codeword read as a polynomial with codeword[0] the highest
    // coefficient.
    let mut syndromes = vec![0u8; roots];
    for (j, s) in syndromes.iter_mut().enumerate() {
        let x = alpha(j);
        *s = codeword.iter().fold(0u8, |acc, &c| mul(acc, x) ^ c);
    }
    if syndromes.iter().all(|&s| s == 0) {
        return Some(0);
    }
    let lambda = berlekamp_massey(&syndromes);
    let errors = lambda.len() - 1;
    if errors == 0 || 2 * errors > roots {
        return None;
    }
    // Ω(x) = S(x) Λ(x) mod x^roots, lowest coefficient first.
    let mut omega = vec![0u8; roots];
    for (i, &l) in lambda.iter().enumerate() {
        for (j, &s) in syndromes.iter().enumerate() {
            if i + j < roots {
                omega[i + j] ^= mul(l, s);
            }
        }
    }
    // Chien search: position p (the power of x) is in error when Λ(α^-p) = 0.
    let mut found = Vec::with_capacity(errors);
    for p in 0..N {
        let x_inv = alpha(255 - p);
        if eval(&lambda, x_inv) == 0 {
            found.push(p);
        }
    }
    if found.len() != errors {
        return None;
    }
    for &p in &found {
        let x = alpha(p);
        let x_inv = alpha(255 - p);
        // Forney, first root α^0: Y = X Ω(X^-1) / Λ'(X^-1).
        let derivative: Vec<u8> = lambda
            .iter()
            .enumerate()
            .skip(1)
            .map(|(i, &l)| if i % 2 == 1 { l } else { 0 })
            .collect();
        let den = eval(&derivative, x_inv);
        if den == 0 {
            return None;
        }
        let y = mul(mul(x, eval(&omega, x_inv)), inv(den));
        codeword[N - 1 - p] ^= y;
    }
    Some(errors)
}

/// p(x) for a polynomial with the lowest coefficient first.
fn eval(poly: &[u8], x: u8) -> u8 {
    poly.iter().rev().fold(0u8, |acc, &c| mul(acc, x) ^ c)
}

/// The error locator Λ(x), lowest coefficient first, trimmed to its degree.
fn berlekamp_massey(s: &[u8]) -> Vec<u8> {
    let mut c = vec![1u8];
    let mut b = vec![1u8];
    let mut l = 0usize;
    let mut m = 1usize;
    let mut last = 1u8;
    for n in 0..s.len() {
        let mut d = s[n];
        for i in 1..=l.min(c.len() - 1) {
            d ^= mul(c[i], s[n - i]);
        }
        if d == 0 {
            m += 1;
            continue;
        }
        let coef = mul(d, inv(last));
        let mut next = c.clone();
        if next.len() < b.len() + m {
            next.resize(b.len() + m, 0);
        }
        for (i, &bi) in b.iter().enumerate() {
            next[i + m] ^= mul(coef, bi);
        }
        if 2 * l <= n {
            l = n + 1 - l;
            b = c;
            last = d;
            m = 1;
        } else {
            m += 1;
        }
        c = next;
    }
    c.truncate(l + 1);
    c.resize(l + 1, 0);
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    /// splitmix64, for reproducible random codewords.
    fn rng(seed: &mut u64) -> u64 {
        *seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = *seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    #[test]
    fn field_tables() {
        assert_eq!(mul(2, 0x80), 0x1d);
        for a in 1..=255u8 {
            assert_eq!(mul(a, inv(a)), 1, "{a}");
        }
        // α has order 255.
        assert_eq!(alpha(255), 1);
        assert_eq!(alpha(8), 0x1d);
    }

    #[test]
    fn generator_has_its_roots() {
        for roots in [2, 3, 16, 24] {
            let g = generator(roots);
            assert_eq!(g.len(), roots + 1);
            for i in 0..roots {
                // g is highest coefficient first.
                let value = g.iter().fold(0u8, |acc, &c| mul(acc, alpha(i)) ^ c);
                assert_eq!(value, 0, "roots {roots}: α^{i}");
            }
        }
    }

    #[test]
    fn codewords_evaluate_to_zero_at_every_root() {
        let mut seed = 1;
        for roots in 2..=24 {
            let message: Vec<u8> = (0..N - roots).map(|_| rng(&mut seed) as u8).collect();
            let parity = parity_reference(&message, roots);
            let mut codeword = [0u8; N];
            codeword[..N - roots].copy_from_slice(&message);
            codeword[N - roots..].copy_from_slice(&parity);
            assert_eq!(decode(&mut codeword, roots), Some(0), "roots {roots}");
        }
    }

    #[test]
    fn table_encoder_matches_the_reference() {
        let mut seed = 7;
        for roots in [2, 7, 8, 9, 16, 17, 24] {
            let enc = Encoder::new(roots);
            let k = N - roots;
            let block_size = 5;
            let blocks: Vec<u8> = (0..k * block_size).map(|_| rng(&mut seed) as u8).collect();
            for present in [k, k - 3, 1] {
                let mut out = vec![0u8; block_size * roots];
                enc.encode(&blocks, block_size, present, block_size, &mut out);
                for b in 0..block_size {
                    let message: Vec<u8> = (0..k)
                        .map(|i| {
                            if i < present {
                                blocks[i * block_size + b]
                            } else {
                                0
                            }
                        })
                        .collect();
                    assert_eq!(
                        out[b * roots..(b + 1) * roots],
                        parity_reference(&message, roots),
                        "roots {roots} present {present} codeword {b}"
                    );
                }
            }
        }
    }

    #[test]
    fn corrects_up_to_half_the_roots() {
        let mut seed = 99;
        for roots in 2..=24 {
            for _ in 0..20 {
                let k = N - roots;
                let message: Vec<u8> = (0..k).map(|_| rng(&mut seed) as u8).collect();
                let mut good = [0u8; N];
                good[..k].copy_from_slice(&message);
                good[k..].copy_from_slice(&parity_reference(&message, roots));
                let errors = 1 + rng(&mut seed) as usize % (roots / 2);
                let mut bad = good;
                let mut positions = std::collections::BTreeSet::new();
                while positions.len() < errors {
                    positions.insert(rng(&mut seed) as usize % N);
                }
                for &p in &positions {
                    bad[p] ^= 1 + (rng(&mut seed) % 255) as u8;
                }
                assert_eq!(decode(&mut bad, roots), Some(errors), "roots {roots}");
                assert_eq!(bad, good, "roots {roots} errors {positions:?}");
            }
        }
    }

    #[test]
    fn too_many_errors_are_not_miscorrected_silently_for_small_roots() {
        // With 2 roots, two errors are beyond the code: decode must not claim success with the
        // original codeword (it may find another codeword, which the hash tree then rejects).
        let mut seed = 5;
        let roots = 2;
        let k = N - roots;
        let message: Vec<u8> = (0..k).map(|_| rng(&mut seed) as u8).collect();
        let mut good = [0u8; N];
        good[..k].copy_from_slice(&message);
        good[k..].copy_from_slice(&parity_reference(&message, roots));
        let mut bad = good;
        bad[3] ^= 1;
        bad[200] ^= 2;
        if decode(&mut bad, roots).is_some() {
            assert_ne!(bad, good);
        }
    }
}
