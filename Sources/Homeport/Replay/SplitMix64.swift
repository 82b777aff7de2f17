/// A seeded 64-bit pseudorandom generator for reproducible workloads and replay choices.
///
/// SplitMix64 adds the odd constant `0x9E3779B97F4A7C15` (2^64 divided by the golden ratio)
/// to a 64-bit counter and passes the counter through a bijective mixing function, so
/// every seed yields a full-period sequence of 2^64 outputs. Equal seeds give equal
/// sequences on every platform. It is not a cryptographic generator: never use it for
/// tokens, keys or anything an attacker must not predict.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64

    /// Creates a generator whose sequence is fully determined by `seed`.
    public init(seed: UInt64) {
        state = seed
    }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15

        var mixed = state
        mixed = (mixed ^ (mixed >> 30)) &* 0xBF58_476D_1CE4_E5B9
        mixed = (mixed ^ (mixed >> 27)) &* 0x94D0_49BB_1331_11EB
        return mixed ^ (mixed >> 31)
    }
}
