@testable import Homeport

/// An operation on one tenant's quota, as a client called it.
enum QuotaModelInput: Sendable, Hashable, CustomStringConvertible {
    case reserve(id: String, amount: Int64)
    case commit(id: String, used: Int64)
    case release(id: String)
    case status

    var description: String {
        switch self {
        case .reserve(let id, let amount): "reserve(\(id), \(amount))"
        case .commit(let id, let used): "commit(\(id), \(used))"
        case .release(let id): "release(\(id))"
        case .status: "status"
        }
    }
}

/// What the operation returned, reduced to what the model judges.
enum QuotaModelOutput: Sendable, Hashable, CustomStringConvertible {
    case granted
    case denied(DenialReason)
    /// A commit or release that succeeded, with the tokens it gave back.
    case settled(returned: Int64)
    /// A release of a reservation that had expired.
    case expired
    /// A thrown `QuotaError`, by code.
    case rejected(QuotaError.Code)
    /// The status: consumed plus outstanding chunks, and the limit.
    case status(committedBound: Int64, limit: Int64)

    var description: String {
        switch self {
        case .granted: "granted"
        case .denied(let reason): "denied(\(reason.rawValue))"
        case .settled(let returned): "settled(returned \(returned))"
        case .expired: "expired"
        case .rejected(let code): "rejected(\(code.rawValue))"
        case .status(let bound, let limit): "status(\(bound) of \(limit))"
        }
    }
}

/// The sequential specification of one tenant's quota with a fixed limit
/// and no expiry.
///
/// - A new reservation may be granted only if what is held and used stays
///   within the limit. It may be denied at any time, because a region can
///   only grant from its own chunk. An amount over the limit must be denied
///   as `amount-exceeds-limit`.
/// - A repeated reserve returns the first outcome, or `request-id-reused`
///   with another amount.
/// - A commit of a held reservation gives back `amount − used`; a release
///   gives back `amount`. Repeats return the same; other cases are rejected
///   with the service's codes.
/// - A status's `consumed + outstanding` is at least what is held and used
///   at that instant and at most the limit: no region can have granted
///   more than the store has handed out.
struct QuotaModel: SequentialModel {
    enum State: Hashable, Sendable {
        case held
        case committed(used: Int64)
        case released
        case denied(DenialReason)
    }

    struct Entry: Hashable, Sendable {
        let amount: Int64
        var state: State
    }

    let limit: Int64
    /// Tokens held by reservations plus tokens used by commits.
    var spent: Int64 = 0
    var reservations: [String: Entry] = [:]

    init(limit: Int64) {
        self.limit = limit
    }

    func step(_ input: QuotaModelInput, _ output: QuotaModelOutput) -> QuotaModel? {
        var next = self
        switch input {
        case .reserve(let id, let amount):
            if let entry = reservations[id] {
                guard entry.amount == amount else { return output == .rejected(.requestIDReused) ? self : nil }
                switch (entry.state, output) {
                case (.denied(let first), .denied(let again)):
                    return first == again ? self : nil
                case (.denied, _), (_, .denied):
                    return nil
                case (_, .granted):
                    return self
                default:
                    return nil
                }
            }

            switch output {
            case .granted:
                guard amount <= limit, spent + amount <= limit else { return nil }
                next.spent += amount
                next.reservations[id] = Entry(amount: amount, state: .held)
            case .denied(let reason):
                guard (reason == .amountExceedsLimit) == (amount > limit) else { return nil }
                next.reservations[id] = Entry(amount: amount, state: .denied(reason))
            default:
                return nil
            }
            return next

        case .commit(let id, let used):
            guard let entry = reservations[id] else { return output == .rejected(.reservationNotFound) ? self : nil }
            switch entry.state {
            case .held:
                if used > entry.amount { return output == .rejected(.usedExceedsReserved) ? self : nil }
                guard output == .settled(returned: entry.amount - used) else { return nil }
                next.spent -= entry.amount - used
                next.reservations[id]!.state = .committed(used: used)
                return next
            case .committed(let first):
                if used == first { return output == .settled(returned: entry.amount - first) ? self : nil }
                return output == .rejected(.requestIDReused) ? self : nil
            case .released, .denied:
                return output == .rejected(.reservationNotHeld) ? self : nil
            }

        case .release(let id):
            guard let entry = reservations[id] else { return output == .rejected(.reservationNotFound) ? self : nil }
            switch entry.state {
            case .held:
                guard output == .settled(returned: entry.amount) else { return nil }
                next.spent -= entry.amount
                next.reservations[id]!.state = .released
                return next
            case .released:
                return output == .settled(returned: entry.amount) ? self : nil
            case .committed, .denied:
                return output == .rejected(.reservationNotHeld) ? self : nil
            }

        case .status:
            guard case .status(let bound, let reportedLimit) = output else { return nil }
            return reportedLimit == limit && spent <= bound && bound <= limit ? self : nil
        }
    }
}

typealias QuotaHistory = HistoryRecorder<QuotaModelInput, QuotaModelOutput>
typealias QuotaOperation = HistoryOperation<QuotaModelInput, QuotaModelOutput>
