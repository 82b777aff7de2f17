/// The source of a granted reservation's tokens.
public enum ReservationSource: String, Sendable, Equatable {
    /// The region's local lease chunk, with no store round trip in the call.
    case chunk
    /// The local chunk, refilled by a store round trip made for this call.
    case store
    /// Admitted without the store in fail-open mode, counted against the
    /// region's fail-open bound rather than a chunk.
    case failOpen
}

/// The reason a reservation was denied. Each reason has the `QuotaError` code that
/// `ProblemDetails` maps to the HTTP status.
public enum DenialReason: String, Sendable, Equatable, CaseIterable {
    /// The period's budget that this region could obtain is spent: the tenant
    /// consumed it, or other regions hold the rest in their chunks.
    case limitReached = "limit-reached"
    /// The amount is larger than the whole limit.
    case amountExceedsLimit = "amount-exceeds-limit"
    /// The chunk cannot cover the amount, the store cannot be reached, and
    /// the quota fails closed.
    case storeUnavailable = "store-unavailable"
    /// As `storeUnavailable`, but the quota fails open and this region has
    /// admitted its whole fail-open bound for the period.
    case failOpenBoundReached = "fail-open-bound-reached"

    public var errorCode: QuotaError.Code {
        switch self {
        case .limitReached: .limitReached
        case .amountExceedsLimit: .amountExceedsLimit
        case .storeUnavailable: .storeUnavailable
        case .failOpenBoundReached: .failOpenBoundReached
        }
    }
}

/// The outcome of `reserve`, stored per request id so that a repeated call
/// returns it unchanged.
public enum ReservationOutcome: Sendable, Equatable {
    case granted(source: ReservationSource, expiresAtMilliseconds: Int64)
    /// `detail` names the numbers behind the denial.
    case denied(DenialReason, detail: String)

    public var isGranted: Bool {
        if case .granted = self { return true }
        return false
    }
}

/// The lifecycle of one reservation.
///
/// Legal transitions: `held` → `committed` | `released` | `expired`. A
/// denied reservation starts and stays `denied`. Every state but `held` is
/// final.
public enum ReservationState: Sendable, Equatable {
    case held
    /// `used` tokens were consumed; the rest went back to the quota.
    case committed(used: Int64)
    case released
    /// Neither committed nor released within the TTL; its tokens went back.
    case expired
    case denied

    public var name: String {
        switch self {
        case .held: "held"
        case .committed: "committed"
        case .released: "released"
        case .expired: "expired"
        case .denied: "denied"
        }
    }
}

/// A reservation as a region stores it.
public struct Reservation: Sendable, Equatable {
    public let requestID: ReservationID
    public let amount: Int64
    public let outcome: ReservationOutcome
    public internal(set) var state: ReservationState
    /// The local chunk it was granted from, nil when it was denied or
    /// admitted fail-open. When the region has retired that chunk, ending
    /// the reservation returns nothing, because the store charged the whole
    /// chunk.
    let chunk: Int64?
    /// The period it was admitted in, for a fail-open reservation.
    let failOpenPeriod: Int64?

    /// The time the reservation expires if still held, or nil when it never held tokens.
    public var expiresAtMilliseconds: Int64? {
        if case .granted(_, let expiresAt) = outcome { return expiresAt }
        return nil
    }
}

/// The result of `reserve`: the outcome, and whether it is a replay of an
/// earlier call with the same request id.
public struct ReserveResult: Sendable, Equatable {
    public let requestID: ReservationID
    public let amount: Int64
    public let outcome: ReservationOutcome
    public let replayed: Bool
}

/// The result of `commit` or `release`: the reservation after the call,
/// the tokens it gave back to the quota, and whether the call repeated an
/// earlier one.
public struct SettleResult: Sendable, Equatable {
    public let reservation: Reservation
    /// `amount − used` for a commit, `amount` for a release, 0 when the
    /// reservation had already expired.
    public let returned: Int64
    public let replayed: Bool
}
