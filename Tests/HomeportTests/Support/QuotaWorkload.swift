import Synchronization
import Testing

@testable import Homeport

/// A seeded workload of concurrent reservations against several regions'
/// quota services, with what each client saw, for the concurrency tests on
/// the embedded store and on etcd.
struct QuotaWorkload {
    /// What a client does with a granted reservation.
    enum FollowUp: Sendable, Equatable {
        case commit(used: Int64)
        case release
        case hold
    }

    struct Operation: Sendable {
        let index: Int
        let requestID: ReservationID
        let amount: Int64
        let followUp: FollowUp
        /// Sends the reserve twice at once, to check that both get one outcome.
        let duplicated: Bool
    }

    /// One client's view of its operation.
    struct Outcome: Sendable {
        let operation: Operation
        let region: String
        let first: ReserveResult
        /// The duplicate's result, when the operation was duplicated.
        let duplicate: ReserveResult?
        /// Tokens the reservation holds or used at the end: the amount while
        /// held, `used` once committed, 0 once released or when denied.
        let spent: Int64
    }

    let tenant: TenantID
    let operations: [Operation]

    init(tenant: TenantID, count: Int, maximumAmount: Int64, seed: UInt64) {
        var random = SplitMix64(seed: seed)
        self.tenant = tenant
        self.operations = (0..<count).map { index in
            let amount = Int64.random(in: 1...maximumAmount, using: &random)
            let followUp: FollowUp
            switch Int.random(in: 0..<10, using: &random) {
            case 0..<4: followUp = .commit(used: Int64.random(in: 0...amount, using: &random))
            case 4..<6: followUp = .release
            default: followUp = .hold
            }
            return Operation(
                index: index, requestID: ReservationID("req-\(index)")!, amount: amount, followUp: followUp,
                duplicated: Int.random(in: 0..<10, using: &random) == 0)
        }
    }

    /// Runs the operations in a task group: every operation in its own task
    /// at once, or, with `workers`, that many tasks that each take the next
    /// operation when done with the last. `route` picks the region for an
    /// operation when it starts. `completed` runs after each operation with
    /// the number finished so far, so a test can fail a region part way.
    func run(
        services: [String: QuotaService], workers: Int? = nil, route: @Sendable @escaping (Int) -> String,
        completed: @Sendable @escaping (Int) -> Void = { _ in }
    ) async throws -> [Outcome] {
        let finished = SharedCounter()
        let started = SharedCounter()
        let operations = self.operations
        let tenant = self.tenant
        let taskCount = workers ?? operations.count

        return try await withThrowingTaskGroup(of: [Outcome].self) { group in
            for _ in 0..<taskCount {
                group.addTask {
                    var outcomes: [Outcome] = []
                    while true {
                        let index = started.increment() - 1
                        guard index < operations.count else { return outcomes }
                        let operation = operations[index]
                        let region = route(operation.index)
                        outcomes.append(try await Self.perform(operation, at: region, service: services[region]!, tenant: tenant))
                        completed(finished.increment())
                    }
                }
            }
            return try await group.reduce(into: []) { $0 += $1 }
        }
    }

    private static func perform(_ operation: Operation, at region: String, service: QuotaService, tenant: TenantID) async throws -> Outcome
    {
        let first: ReserveResult
        var duplicate: ReserveResult?
        if operation.duplicated {
            async let again = service.reserve(tenant: tenant, requestID: operation.requestID, amount: operation.amount)
            first = try await service.reserve(tenant: tenant, requestID: operation.requestID, amount: operation.amount)
            duplicate = try await again
        } else {
            first = try await service.reserve(tenant: tenant, requestID: operation.requestID, amount: operation.amount)
        }

        var spent: Int64 = 0
        if first.outcome.isGranted {
            switch operation.followUp {
            case .commit(let used):
                _ = try service.commit(tenant: tenant, requestID: operation.requestID, used: used)
                spent = used
            case .release:
                _ = try service.release(tenant: tenant, requestID: operation.requestID)
            case .hold:
                spent = operation.amount
            }
        }
        return Outcome(operation: operation, region: region, first: first, duplicate: duplicate, spent: spent)
    }

    /// Checks that a duplicate got the first call's outcome, and that a
    /// retry now, at the same region, returns it again.
    static func checkRetries(_ outcomes: [Outcome], services: [String: QuotaService], tenant: TenantID) async throws {
        var mismatches: [String] = []
        for outcome in outcomes {
            let operation = outcome.operation
            if let duplicate = outcome.duplicate, duplicate.outcome != outcome.first.outcome {
                mismatches.append("\(operation.requestID): duplicate got \(duplicate.outcome), first got \(outcome.first.outcome)")
            }
            let retry = try await services[outcome.region]!.reserve(
                tenant: tenant, requestID: operation.requestID, amount: operation.amount)
            if retry.outcome != outcome.first.outcome || !retry.replayed {
                mismatches.append(
                    "\(operation.requestID) at \(outcome.region): retry got \(retry.outcome), first got \(outcome.first.outcome)")
            }
        }
        #expect(mismatches.isEmpty, "\(mismatches.count) request ids changed outcome, first: \(mismatches.prefix(5))")
    }

    /// Checks the record's invariant and returns a description of a violation, if any.
    static func invariantViolation(_ record: QuotaRecord?) -> String? {
        guard let record, record.consumed + record.outstanding > record.policy.limit else { return nil }
        return "consumed \(record.consumed) + outstanding \(record.outstanding) > limit \(record.policy.limit) at period \(record.period)"
    }
}

/// A counter that concurrent tasks share.
final class SharedCounter: Sendable {
    private let value = Atomic<Int>(0)

    /// Adds one and returns the new value.
    func increment() -> Int {
        value.add(1, ordering: .relaxed).newValue
    }
}

/// A flag that concurrent tasks share.
final class SharedFlag: Sendable {
    private let value = Atomic<Bool>(false)

    var isSet: Bool { value.load(ordering: .acquiring) }

    func set() {
        value.store(true, ordering: .releasing)
    }
}
